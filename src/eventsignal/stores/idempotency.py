"""Idempotent commands in the store contract: a key recorded atomically with a command's events.

A client that retries a command (a lost answer, a redelivered message) passes the same
idempotency key each time. The store records the key in the same transaction, or the same atomic
publish, as the command's events, so either both are stored or neither is; a later attempt finds
the key and runs nothing. Keys are per aggregate and kept as :class:`KeyRetention` says: the
newest ``keep`` keys of each aggregate, each for at least ``max_age``; older ones are dropped
when the aggregate records its next key.

These methods sit beside :class:`~eventsignal.stores.EventStore`'s, in a protocol of their own,
so that a store's plain appends stay as they are: a command without a key pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import msgspec

from eventsignal.domain.errors import ConfigurationError, IdempotencyKeyTooLong
from eventsignal.stores.base import StoredEvent

MAX_KEY_LENGTH = 200
"""The longest idempotency key, in characters (an aggregate id's limit too)."""


class KeyRetention(msgspec.Struct, frozen=True, kw_only=True):
    """How long an aggregate's idempotency keys are kept: its newest ``keep`` keys, each for at
    least ``max_age`` (``None``: until ``keep`` newer ones push it out).

    The default, 100 keys per aggregate for a day, covers client retries, which come within
    minutes, with room to spare; a key dropped by either limit is a new command again.
    """

    keep: int = 100
    max_age: timedelta | None = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ConfigurationError(f"KeyRetention.keep must be at least 1, not {self.keep}")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ConfigurationError("KeyRetention.max_age must be positive, or None")

    def cutoff(self, now: datetime) -> datetime | None:
        """Keys recorded before this moment may be dropped."""
        return None if self.max_age is None else now - self.max_age


DEFAULT_RETENTION = KeyRetention()


class CommandKey(msgspec.Struct, frozen=True, kw_only=True):
    """An idempotency key as a store records it with a command's events.

    ``digest`` identifies the command the key came with (see
    :func:`eventsignal.idempotency.command_digest`), so one key sent with two different
    commands is noticed; ``recorded_at`` is when it was stored.
    """

    key: str
    digest: str
    recorded_at: datetime


class RecordedCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A command a store recorded under an idempotency key: ``version`` is the aggregate's
    version once the command's events were stored (0 for a creation without events)."""

    key: str
    digest: str
    version: int
    recorded_at: datetime


@runtime_checkable
class IdempotentStore(Protocol):
    """What a store offers for idempotent commands (every store in this package does).

    Contract (checked by :class:`eventsignal.testing.EventStoreCompliance`):

    * ``append_keyed`` / ``create_keyed`` behave as ``append`` / ``create`` and record ``key``
      atomically with the events: both are stored or neither. A key the aggregate holds already
      fails the call with :class:`~eventsignal.CommandKeyTaken` and stores nothing (a version
      conflict, checked first, raises :class:`~eventsignal.ConcurrencyError` as usual).
    * Recording a key drops the aggregate's keys that ``retention`` no longer keeps.
    * ``find_command`` returns the command recorded under ``key`` for that aggregate, from any
      process, after any restart, or ``None``. A key within ``retention`` is always found; one
      past it may be found still (a store that prunes on write keeps it until the aggregate
      records its next key; a stream that is never pruned stops looking at ``retention``).
    """

    async def append_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """``append``, recording ``key`` with the events, atomically."""
        ...

    async def create_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """``create``, recording ``key`` with the events, atomically."""
        ...

    async def find_command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        key: str,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> RecordedCommand | None:
        """The command recorded under ``key`` for this aggregate, or ``None``."""
        ...


def check_key(aggregate_name: str, aggregate_id: str, key: object) -> str:
    """``key`` if a store can keep it: a non-empty string of at most :data:`MAX_KEY_LENGTH`
    printable characters."""
    if type(key) is not str or not key:
        raise ConfigurationError(
            f"{aggregate_name} {aggregate_id!r}: an idempotency key must be a non-empty string"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise IdempotencyKeyTooLong(aggregate_name, aggregate_id, key, MAX_KEY_LENGTH)
    if not key.isprintable():
        raise ConfigurationError(
            f"{aggregate_name} {aggregate_id!r}: idempotency key {key!r} holds control characters"
        )
    return key


def to_drop(recorded: Sequence[RecordedCommand], retention: KeyRetention, now: datetime) -> int:
    """How many of ``recorded`` (oldest first) to drop so that ``retention`` holds."""
    cutoff = retention.cutoff(now)
    drop = max(len(recorded) - retention.keep, 0)
    if cutoff is not None:
        while drop < len(recorded) and recorded[drop].recorded_at < cutoff:
            drop += 1
    return drop
