"""Archive, restore, delete and truncate for :class:`~eventsignal.stores.memory.MemoryStore`.

Cold storage is a dictionary beside the log. Each operation completes without yielding to the
event loop, so it is atomic with respect to appends and reads, as every operation of this store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventsignal.domain.errors import (
    AggregateArchived,
    AggregateDeleted,
    AggregateNotFound,
)
from eventsignal.stores.lifecycle import (
    ARCHIVE_TABLE,
    ARCHIVED_VERSION,
    DELETED_VERSION,
    LifecycleResult,
    StreamStatus,
    check_truncation,
    deletion_record,
)
from eventsignal.stores.memory.records import (
    ENTRY,
    Kept,
    Log,
    kept,
    position_of,
    positions_in,
    stream_of,
)

if TYPE_CHECKING:
    from eventsignal.stores.base import Snapshot

_Key = tuple[str, str]


class MemoryLifecycle:
    """The lifecycle half of the memory store; it works on the store's own dictionaries."""

    # Provided by MemoryStore.
    _streams: dict[_Key, bytearray]
    _created: dict[_Key, datetime]
    _log: Log
    _snapshots: dict[_Key, Snapshot]
    _head: int

    def _init_lifecycle(self) -> None:
        self._head = 0  # the last position ever given: never handed out again
        self._closed: dict[_Key, int] = {}  # archived or deleted: the marker of which
        self._trimmed: dict[_Key, int] = {}  # truncated: how many leading versions are gone
        self._archive: dict[_Key, list[Kept]] = {}
        self._changed: dict[_Key, datetime] = {}

    def _wake(self) -> None:
        raise NotImplementedError

    def _known(self, aggregate_name: str, aggregate_id: str) -> _Key:
        key = (aggregate_name, aggregate_id)
        if key not in self._created:
            raise AggregateNotFound(aggregate_name, aggregate_id)
        return key

    async def stream_status(self, aggregate_name: str, aggregate_id: str) -> StreamStatus:
        key = self._known(aggregate_name, aggregate_id)
        closed = self._closed.get(key)
        trimmed = self._trimmed.get(key, 0)
        live = len(self._streams.get(key, b"")) // ENTRY  # events
        archived = self._archive.get(key, [])
        if live:  # a live stream's versions follow on from those truncated
            version, first_version = trimmed + live, trimmed + 1
        elif archived:
            version, first_version = archived[-1].version, archived[0].version
        else:
            version, first_version = trimmed, trimmed + 1
        return StreamStatus(
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            state="live"
            if closed is None
            else ("archived" if closed == ARCHIVED_VERSION else "deleted"),
            version=version,
            first_version=first_version,
            events=live,
            archived=len(archived),
            location=ARCHIVE_TABLE if closed == ARCHIVED_VERSION else None,
            changed_at=self._changed.get(key),
        )

    async def any_changed(self) -> bool:
        return bool(self._closed or self._trimmed)

    def _refuse_closed(self, key: _Key) -> None:
        closed = self._closed.get(key)
        if closed == ARCHIVED_VERSION:
            raise AggregateArchived(*key)
        if closed == DELETED_VERSION:
            raise AggregateDeleted(*key)

    def _drop_from_log(self, positions: list[int]) -> list[Kept]:
        """Take the events at ``positions`` out of the log; return them."""
        if not positions:
            return []
        pop = self._log.pop
        return [pop(p) for p in positions]

    async def archive(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        key = self._known(aggregate_name, aggregate_id)
        self._refuse_closed(key)
        events = self._drop_from_log(positions_in(self._streams.pop(key)))
        self._archive[key] = events
        self._closed[key] = ARCHIVED_VERSION
        self._changed[key] = datetime.now(UTC)
        return LifecycleResult(
            operation="archive",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=len(events),
        )

    async def restore(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        key = self._known(aggregate_name, aggregate_id)
        if self._closed.get(key) != ARCHIVED_VERSION:
            self._refuse_closed(key)
            return LifecycleResult(
                operation="restore",
                aggregate_name=aggregate_name,
                aggregate_id=aggregate_id,
                events=0,
            )
        events = self._archive.pop(key)
        del self._closed[key]
        self._changed[key] = datetime.now(UTC)
        self._streams[key] = stream_of(e.position for e in events)
        if events:
            merged = [*self._log.values(), *events]
            self._log = {e.position: e for e in sorted(merged, key=position_of)}
        return LifecycleResult(
            operation="restore",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=len(events),
        )

    async def delete(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        key = self._known(aggregate_name, aggregate_id)
        if self._closed.get(key) == DELETED_VERSION:
            raise AggregateDeleted(aggregate_name, aggregate_id)
        status = await self.stream_status(aggregate_name, aggregate_id)
        live = self._drop_from_log(positions_in(self._streams.pop(key, bytearray())))
        archived = self._archive.pop(key, [])
        self._snapshots.pop(key, None)
        self._closed[key] = DELETED_VERSION
        self._changed[key] = datetime.now(UTC)
        count = len(live) + len(archived)
        position = self._head + 1
        record = deletion_record(aggregate_name, aggregate_id, status.version, count)
        self._log[position] = kept(record, position, "")
        self._head = position
        self._wake()
        return LifecycleResult(
            operation="delete",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=count,
            position=position,
        )

    async def truncate_before(
        self,
        aggregate_name: str,
        aggregate_id: str,
        version: int,
        *,
        snapshot_version: int | None = None,
    ) -> LifecycleResult:
        key = self._known(aggregate_name, aggregate_id)
        self._refuse_closed(key)
        stream = self._streams[key]
        trimmed = self._trimmed.get(key, 0)
        current = trimmed + len(stream) // ENTRY
        if snapshot_version is None:
            snapshot = self._snapshots.get(key)
            snapshot_version = None if snapshot is None else snapshot.version
        check_truncation(aggregate_name, aggregate_id, version, current, snapshot_version)
        drop = max(version - 1 - trimmed, 0)
        if drop:
            self._drop_from_log(positions_in(stream, 0, drop))
            del stream[: drop * ENTRY]
            self._trimmed[key] = trimmed + drop
            self._changed[key] = datetime.now(UTC)
        return LifecycleResult(
            operation="truncate",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=drop,
        )
