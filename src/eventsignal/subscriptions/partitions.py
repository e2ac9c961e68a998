"""Competing consumers: events split into partitions by aggregate, partitions shared by members.

Every process running a subscription is a member. Members announce themselves with a heartbeat;
each takes its fair share (``ceil(partitions / members)``) of the partitions that are free or
whose lease expired, and gives back what exceeds its share, so work moves to newcomers and away
from the dead without a coordinator.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import msgspec

from eventsignal.stores.subscription_state import Lease


def partition_of(aggregate_name: str, aggregate_id: str, partitions: int) -> int:
    """The partition of an aggregate: a hash that is the same in every process and release.

    (Python's ``hash`` of a string changes per process, so it cannot be used.)
    """
    if partitions == 1:
        return 0
    return zlib.crc32(f"{aggregate_name}\x00{aggregate_id}".encode()) % partitions


class Plan(msgspec.Struct, frozen=True):
    """What a member should do now: partitions to claim (in order of preference) and release."""

    claim: tuple[int, ...]
    release: tuple[int, ...]


def plan(leases: Sequence[Lease], members: Sequence[str], member: str, now: float) -> Plan:
    """Decide which partitions ``member`` claims or releases to reach its fair share."""
    alive = len(set(members) | {member})
    share = math.ceil(len(leases) / alive)
    mine = [lease.part for lease in leases if lease.owner == member and lease.lease_until >= now]
    if len(mine) > share:
        return Plan(claim=(), release=tuple(mine[share:]))
    free = [lease.part for lease in leases if lease.owner is None or lease.lease_until < now]
    # Start at an offset derived from the member, so newcomers do not all race for partition 0.
    if free:
        offset = zlib.crc32(member.encode()) % len(free)
        free = free[offset:] + free[:offset]
    return Plan(claim=tuple(free[: share - len(mine)]), release=())
