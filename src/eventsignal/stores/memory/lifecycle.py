"""Archive, restore, delete and truncate for :class:`~eventsignal.stores.memory.MemoryStore`.

Cold storage is a dictionary beside the log. Each operation completes without yielding to the
event loop, so it is atomic with respect to appends and reads, as every operation of this store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from eventsignal.domain.errors import (
    AggregateArchived,
    AggregateDeleted,
    AggregateNotFound,
)
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.lifecycle import (
    ARCHIVE_TABLE,
    ARCHIVED_VERSION,
    DELETED_VERSION,
    LifecycleResult,
    StreamStatus,
    check_truncation,
    deletion_record,
)

if TYPE_CHECKING:
    from eventsignal.stores.base import Snapshot

_Key = tuple[str, str]


class MemoryLifecycle:
    """The lifecycle half of the memory store; it works on the store's own dictionaries."""

    # Provided by MemoryStore.
    _streams: dict[_Key, list[StoredEvent]]
    _created: dict[_Key, datetime]
    _log: list[StoredEvent]
    _snapshots: dict[_Key, Snapshot]
    _head: int

    def _init_lifecycle(self) -> None:
        self._head = 0  # the last position ever given: never handed out again
        self._gaps = False  # whether the log lost events, so index and position differ
        self._closed: dict[_Key, int] = {}  # archived or deleted: the marker of which
        self._trimmed: dict[_Key, int] = {}  # truncated: how many leading versions are gone
        self._archive: dict[_Key, list[StoredEvent]] = {}
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
        live = self._streams.get(key, [])
        archived = self._archive.get(key, [])
        kept = live or archived
        return StreamStatus(
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            state="live"
            if closed is None
            else ("archived" if closed == ARCHIVED_VERSION else "deleted"),
            version=kept[-1].version if kept else trimmed,
            first_version=kept[0].version if kept else trimmed + 1,
            events=len(live),
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

    def _drop_from_log(self, key: _Key) -> None:
        self._log = [e for e in self._log if (e.aggregate_name, e.aggregate_id) != key]
        self._gaps = True

    async def archive(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        key = self._known(aggregate_name, aggregate_id)
        self._refuse_closed(key)
        events = self._streams.pop(key)
        self._archive[key] = events
        self._closed[key] = ARCHIVED_VERSION
        self._changed[key] = datetime.now(UTC)
        if events:
            self._drop_from_log(key)
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
        self._streams[key] = events
        if events:
            self._log = sorted([*self._log, *events], key=_position)
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
        live = self._streams.pop(key, [])
        archived = self._archive.pop(key, [])
        self._snapshots.pop(key, None)
        self._closed[key] = DELETED_VERSION
        self._changed[key] = datetime.now(UTC)
        if live:
            self._drop_from_log(key)
        count = len(live) + len(archived)
        position = self._head + 1
        record = msgspec.structs.replace(
            deletion_record(aggregate_name, aggregate_id, status.version, count),
            position=position,
        )
        self._log.append(record)
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
        current = trimmed + len(stream)
        if snapshot_version is None:
            snapshot = self._snapshots.get(key)
            snapshot_version = None if snapshot is None else snapshot.version
        check_truncation(aggregate_name, aggregate_id, version, current, snapshot_version)
        drop = max(version - 1 - trimmed, 0)
        if drop:
            gone = {id(e) for e in stream[:drop]}
            self._log = [e for e in self._log if id(e) not in gone]
            self._gaps = True
            del stream[:drop]
            self._trimmed[key] = trimmed + drop
            self._changed[key] = datetime.now(UTC)
        return LifecycleResult(
            operation="truncate",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=drop,
        )


def _position(event: StoredEvent) -> int:
    return event.position
