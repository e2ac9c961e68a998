"""An event store in a dictionary: for tests, examples and single-process tools.

It keeps encoded events exactly as a durable store would, so anything that cannot be encoded or
decoded fails here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from eventsignal.domain.errors import AggregateExists, AggregateNotFound, ConcurrencyError
from eventsignal.domain.identity import validate_id, validate_name
from eventsignal.stores.base import (
    AggregateInfo,
    Snapshot,
    StoredEvent,
    StoreLifecycle,
    StoreStats,
    check_versions,
)
from eventsignal.stores.memory.dcb import MemoryDcb
from eventsignal.stores.memory.subscriptions import MemorySubscriptions

_Key = tuple[str, str]
_replace = msgspec.structs.replace


class MemoryStore(StoreLifecycle, MemorySubscriptions):
    """A non-durable :class:`~eventsignal.stores.EventStore` (and snapshot store, and
    subscription state) in this object.

    Every operation on events completes without yielding to the event loop, which makes each one
    atomic with respect to other coroutines.
    """

    def __init__(self) -> None:
        self._init_subscriptions()
        self._appends = 0
        self._streams: dict[_Key, list[StoredEvent]] = {}
        self._created: dict[_Key, datetime] = {}
        self._log: list[StoredEvent] = []
        self._followers: list[asyncio.Future[None]] = []
        self._snapshots: dict[_Key, Snapshot] = {}

    async def open(self) -> None:
        self._users += 1

    @property
    def dcb(self) -> MemoryDcb:
        """Reads and appends by query (dynamic consistency boundaries) over this store's log."""
        return MemoryDcb(self)

    async def close(self) -> None:
        self._users = max(self._users - 1, 0)

    @property
    def stats(self) -> StoreStats:
        """Counters; here every append (or creation) is its own transaction."""
        return StoreStats(self._appends, len(self._log), self._appends)

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
    ) -> Sequence[int]:
        key = (validate_name(aggregate_name), validate_id(aggregate_id))
        if key in self._created:
            raise AggregateExists(aggregate_name, aggregate_id)
        check_versions(aggregate_name, aggregate_id, 0, events)
        self._created[key] = created_at or datetime.now(UTC)
        stream: list[StoredEvent] = []
        self._streams[key] = stream
        if not events:
            self._appends += 1
            return ()
        return self._keep(stream, events)

    async def exists(self, aggregate_name: str, aggregate_id: str) -> bool:
        return (aggregate_name, aggregate_id) in self._created

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]:
        stream = self._streams.get((aggregate_name, aggregate_id))
        if stream is None:
            raise AggregateNotFound(aggregate_name, aggregate_id)
        if len(stream) != expected_version:
            raise ConcurrencyError(aggregate_name, aggregate_id, expected_version, len(stream))
        check_versions(aggregate_name, aggregate_id, expected_version, events)
        return self._keep(stream, events)

    def _keep(self, stream: list[StoredEvent], events: Sequence[StoredEvent]) -> Sequence[int]:
        """Give checked events their positions and add them to their stream and the log."""
        log = self._log
        first = len(log) + 1
        if len(events) == 1:  # the common case, without the general loop
            event = _replace(events[0], position=first)
            stream.append(event)
            log.append(event)
            positions: Sequence[int] = (first,)
        else:
            positions = range(first, first + len(events))
            stored = [_replace(e, position=p) for e, p in zip(events, positions, strict=True)]
            stream.extend(stored)
            log.extend(stored)
        self._appends += 1
        if self._followers:
            self._wake()
        return positions

    def _wake(self) -> None:
        for waiter in self._followers:
            if not waiter.done():
                waiter.set_result(None)
        self._followers.clear()

    async def wait_for_events(self, after_position: int) -> None:
        if len(self._log) > after_position:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._followers.append(waiter)
        await waiter

    async def read_aggregate(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> Sequence[StoredEvent]:
        stream = self._streams.get((aggregate_name, aggregate_id), ())
        return list(stream[max(after_version, 0) :])

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> Sequence[StoredEvent]:
        # Positions are 1..len(log) with no gaps, so the index is the position.
        start = max(after_position, 0)
        return self._log[start : start + limit]

    async def head_position(self) -> int:
        return len(self._log)

    async def aggregates(self, aggregate_name: str | None = None) -> Sequence[AggregateInfo]:
        return [
            AggregateInfo(
                aggregate_name=name,
                aggregate_id=aggregate_id,
                version=len(self._streams[(name, aggregate_id)]),
                created_at=created,
            )
            for (name, aggregate_id), created in self._created.items()
            if aggregate_name is None or name == aggregate_name
        ]

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        key = (snapshot.aggregate_name, snapshot.aggregate_id)
        current = self._snapshots.get(key)
        if current is None or current.version < snapshot.version:
            self._snapshots[key] = snapshot

    async def load_snapshot(self, aggregate_name: str, aggregate_id: str) -> Snapshot | None:
        return self._snapshots.get((aggregate_name, aggregate_id))
