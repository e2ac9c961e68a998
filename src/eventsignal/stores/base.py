"""The one contract every event store implements.

Stores keep encoded events (:class:`StoredEvent`), never user objects: encoding happens once, in
:mod:`eventsignal.serialization`, so every backend (and the in-memory one used in tests) sees the
same bytes, and tools such as the CLI can read a store without the user's classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import msgspec


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as a store keeps it: the envelope with the user's data encoded to bytes.

    ``position`` is 0 until the store assigns the event its place in the global order.
    """

    id: UUID
    aggregate_name: str
    aggregate_id: str
    version: int
    name: str
    timestamp: datetime
    data: bytes
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)
    position: int = 0


class AggregateInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One aggregate known to a store, with the version its latest event reached."""

    aggregate_name: str
    aggregate_id: str
    version: int
    created_at: datetime


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An aggregate's encoded state as of ``version``, in the shape ``schema_version`` names."""

    aggregate_name: str
    aggregate_id: str
    version: int
    schema_version: int
    state: bytes
    taken_at: datetime


@runtime_checkable
class SnapshotStore(Protocol):
    """Keeps the latest snapshot of each aggregate; an older one never replaces a newer one."""

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, aggregate_name: str, aggregate_id: str) -> Snapshot | None: ...


@runtime_checkable
class EventStore(Protocol):
    """Append-only storage of events, with optimistic concurrency per aggregate.

    Contract (checked by :class:`eventsignal.testing.EventStoreCompliance`):

    * ``create`` records an aggregate, with its first events if any (atomically: all or
      nothing), and returns their positions; a used id raises
      :class:`~eventsignal.AggregateExists`.
    * ``append`` stores all events of one command atomically, or none of them. It succeeds only if
      the aggregate exists (else :class:`~eventsignal.AggregateNotFound`) and its current version
      equals ``expected_version`` (else :class:`~eventsignal.ConcurrencyError`). The events carry
      the versions ``expected_version + 1 ...`` in order. It returns the global positions assigned,
      one per event, and returns only once the events are durable.
    * ``read_aggregate`` returns one aggregate's events after a version, in version order.
    * ``read_all`` returns events of all aggregates after a global position, in position order, and
      never skips an event that becomes visible later with a lower position.
    * ``wait_for_events`` wakes followers when new events are appended.
    * ``open`` and ``close`` are counted: a store shared by several users closes when the last
      one closes it. Both are idempotent from a single user's point of view.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(
        self, aggregate_name: str, aggregate_id: str, events: Sequence[StoredEvent] = ()
    ) -> Sequence[int]: ...

    async def exists(self, aggregate_name: str, aggregate_id: str) -> bool: ...

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]: ...

    async def read_aggregate(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> Sequence[StoredEvent]: ...

    async def read_all(
        self, after_position: int = 0, limit: int = 1000
    ) -> Sequence[StoredEvent]: ...

    async def head_position(self) -> int: ...

    async def aggregates(self, aggregate_name: str | None = None) -> Sequence[AggregateInfo]: ...

    async def wait_for_events(self, after_position: int) -> None:
        """Return once an event past ``after_position`` may be readable.

        Callers bound the wait with :func:`asyncio.timeout`. Spurious wake-ups are allowed, missed
        ones are not: followers always re-read. This lets subscriptions follow without polling.
        """
        ...


def check_versions(
    aggregate_name: str, aggregate_id: str, expected_version: int, events: Sequence[StoredEvent]
) -> None:
    """Reject a batch whose versions do not follow ``expected_version`` one by one.

    Every store calls this before touching storage: a gap or a duplicate inside a batch is a bug in
    the caller, not a conflict with another writer.
    """
    version = expected_version
    for event in events:
        version += 1
        if (
            event.version != version
            or event.aggregate_id != aggregate_id
            or event.aggregate_name != aggregate_name
        ):
            raise ValueError(
                f"{aggregate_name} {aggregate_id!r}: event {event.name!r} of "
                f"{event.aggregate_name} {event.aggregate_id!r} has version {event.version}, "
                f"expected version {version}"
            )
