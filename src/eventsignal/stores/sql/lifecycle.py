"""Stream lifecycle in a SQL event store's own database (SQLite, PostgreSQL).

Tables, migrated as the component ``lifecycle``: ``eventsignal_archive`` (cold storage: the
events table's columns, rows moved there unchanged, positions included) and
``eventsignal_tombstones`` (one row per archived, deleted or truncated aggregate: its state,
last version, first kept version and where its events are).

An archived or deleted aggregate keeps its row in ``eventsignal_aggregates``, with a marker in
place of its version: an append expecting any real version fails its compare-and-set and reads
the marker, so the append path refuses a closed stream without a statement more than before,
and a creation finds the id taken. Every operation runs in one store transaction (serialized
with appends), so readers see the log before or after it, never halfway.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventsignal.domain.errors import AggregateArchived, AggregateDeleted, AggregateNotFound
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.lifecycle import (
    ARCHIVE_TABLE,
    ARCHIVED_VERSION,
    DELETED_VERSION,
    LifecycleResult,
    StreamState,
    StreamStatus,
    check_truncation,
    deletion_record,
)
from eventsignal.stores.sql.contract import (
    Dialect,
    SQLStore,
    SQLTransaction,
    ensure_component,
    for_dialect,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

COMPONENT = "lifecycle"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_COLUMNS = (
    "position, event_id, aggregate_name, aggregate_id, version, name, timestamp, data, metadata"
)


def _schema(id_type: str, time_type: str, blob: str, meta: str, real: str) -> list[list[str]]:
    return [
        [
            f"""CREATE TABLE IF NOT EXISTS {ARCHIVE_TABLE} (
                position BIGINT PRIMARY KEY,
                event_id {id_type} NOT NULL UNIQUE,
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                name TEXT NOT NULL,
                timestamp {time_type} NOT NULL,
                data {blob} NOT NULL,
                metadata {meta} NOT NULL,
                UNIQUE (aggregate_name, aggregate_id, version)
            )""",
            f"""CREATE TABLE IF NOT EXISTS eventsignal_tombstones (
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                state TEXT NOT NULL,
                version INTEGER NOT NULL,
                first_version INTEGER NOT NULL,
                location TEXT,
                changed_at {real} NOT NULL,
                PRIMARY KEY (aggregate_name, aggregate_id)
            )""",
        ]
    ]


MIGRATIONS: dict[Dialect, list[list[str]]] = {
    "sqlite": _schema("BLOB", "INTEGER", "BLOB", "TEXT", "REAL"),
    "postgres": _schema("UUID", "TIMESTAMPTZ", "BYTEA", "JSONB", "DOUBLE PRECISION"),
}

_WHERE = "WHERE aggregate_name = ? AND aggregate_id = ?"
# Streams of tenants other than the default one have no lifecycle yet: the tables that hold every
# tenant's rows are read and changed for the default tenant's alone.
_OWN = f"{_WHERE} AND tenant = ''"
_AGGREGATE_VERSION = f"SELECT version FROM eventsignal_aggregates {_OWN}"
_TOMBSTONE = (
    "SELECT state, version, first_version, location, changed_at FROM eventsignal_tombstones "
    + _WHERE
)
# A stream's events: SQLite finds them by the stream's number (its events schema, version 3).
_OWN_EVENTS: dict[Dialect, str] = {
    "sqlite": f"WHERE stream = (SELECT stream FROM eventsignal_aggregates {_OWN})",
    "postgres": _OWN,
}
_LIVE = {
    dialect: f"SELECT count(*), min(version) FROM eventsignal_events {own} AND version > 0"
    for dialect, own in _OWN_EVENTS.items()
}
_ARCHIVED = f"SELECT count(*), min(version) FROM {ARCHIVE_TABLE} {_WHERE}"
_SET_VERSION = f"UPDATE eventsignal_aggregates SET version = ? {_OWN}"
_MARK = """INSERT INTO eventsignal_tombstones
    (aggregate_name, aggregate_id, state, version, first_version, location, changed_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (aggregate_name, aggregate_id) DO UPDATE SET
        state = excluded.state, version = excluded.version,
        first_version = excluded.first_version, location = excluded.location,
        changed_at = excluded.changed_at"""
_UNMARK = f"DELETE FROM eventsignal_tombstones {_WHERE}"
_TO_ARCHIVE = {
    dialect: f"INSERT INTO {ARCHIVE_TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM eventsignal_events "
    f"{own} AND version > 0"
    for dialect, own in _OWN_EVENTS.items()
}
_DROP_LIVE = {
    dialect: f"DELETE FROM eventsignal_events {own} AND version > 0"
    for dialect, own in _OWN_EVENTS.items()
}
_DROP_ARCHIVED = f"DELETE FROM {ARCHIVE_TABLE} {_WHERE}"
_DROP_BEFORE = {
    dialect: f"DELETE FROM eventsignal_events {own} AND version > 0 AND version < ?"
    for dialect, own in _OWN_EVENTS.items()
}
_DROP_SNAPSHOT = f"DELETE FROM eventsignal_snapshots {_OWN}"
_SNAPSHOT_VERSION = f"SELECT version FROM eventsignal_snapshots {_OWN}"


def _restore_statement(dialect: Dialect) -> str:
    # PostgreSQL gives positions itself (an identity column): the original ones need an override.
    override = " OVERRIDING SYSTEM VALUE" if dialect == "postgres" else ""
    return (
        f"INSERT INTO eventsignal_events ({_COLUMNS}){override} SELECT {_COLUMNS} "
        f"FROM {ARCHIVE_TABLE} {_WHERE} ORDER BY position"
    )


class _Stream:
    """What one transaction read about a stream before changing it."""

    def __init__(
        self,
        aggregate_name: str,
        aggregate_id: str,
        marker: int,
        tombstone: tuple[Any, ...] | None,
        live: tuple[Any, ...],
        archived: tuple[Any, ...],
    ) -> None:
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.state: StreamState = "live"
        if tombstone is not None and tombstone[0] in ("archived", "deleted"):
            self.state = tombstone[0]
        self.version = marker if marker >= 0 else int(tombstone[1]) if tombstone else 0
        self.first_version = int(tombstone[2]) if tombstone is not None else 1
        self.changed_at = (
            None if tombstone is None else datetime.fromtimestamp(float(tombstone[4]), UTC)
        )
        self.location = None if tombstone is None else tombstone[3]
        self.events = int(live[0])
        self.archived = int(archived[0])

    def status(self) -> StreamStatus:
        return StreamStatus(
            aggregate_name=self.aggregate_name,
            aggregate_id=self.aggregate_id,
            state=self.state,
            version=self.version,
            first_version=self.first_version,
            events=self.events,
            archived=self.archived,
            location=self.location,
            changed_at=self.changed_at,
        )

    def refuse_closed(self) -> None:
        if self.state == "archived":
            raise AggregateArchived(self.aggregate_name, self.aggregate_id)
        if self.state == "deleted":
            raise AggregateDeleted(self.aggregate_name, self.aggregate_id)


class SQLStreamLifecycle:
    """The :class:`~eventsignal.stores.lifecycle.LifecycleStore` methods of a SQL store.

    A SQL store inherits them; it may override :meth:`_lifecycle_begin` (PostgreSQL takes its
    append ordering lock there) and :meth:`_lifecycle_announce` (to wake followers of the log).
    """

    if TYPE_CHECKING:
        dialect: Dialect

        def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

        def read_transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

        async def migrate_component(
            self, component: str, migrations: Sequence[Sequence[str]]
        ) -> None: ...

    async def _lifecycle_begin(self, tx: SQLTransaction) -> None:
        """Called first in every lifecycle transaction."""

    async def _lifecycle_announce(self, tx: SQLTransaction, position: int) -> None:
        """Called once a deletion record got ``position``, before the commit."""

    async def _prepare_lifecycle(self) -> None:
        from eventsignal.stores.sql.snapshots import SQLSnapshotStore

        await ensure_component(self, COMPONENT, MIGRATIONS[self.dialect])
        # Deletion drops the snapshot and truncation reads it: the table must exist.
        await SQLSnapshotStore(self._as_store()).prepare()

    def _as_store(self) -> SQLStore:
        assert isinstance(self, SQLStore)
        return self

    def _q(self, statement: str) -> str:
        return for_dialect(statement, self.dialect)

    async def _read_stream(
        self, tx: SQLTransaction, aggregate_name: str, aggregate_id: str
    ) -> _Stream:
        key = (aggregate_name, aggregate_id)
        row = await tx.fetchone(self._q(_AGGREGATE_VERSION), key)
        if row is None:
            raise AggregateNotFound(aggregate_name, aggregate_id)
        tombstone = await tx.fetchone(self._q(_TOMBSTONE), key)
        live = await tx.fetchone(self._q(_LIVE[self.dialect]), key)
        archived = await tx.fetchone(self._q(_ARCHIVED), key)
        assert live is not None
        assert archived is not None
        return _Stream(aggregate_name, aggregate_id, int(row[0]), tombstone, live, archived)

    async def _mark(
        self, tx: SQLTransaction, stream: _Stream, state: str, location: str | None = None
    ) -> None:
        await tx.execute(
            self._q(_MARK),
            (
                stream.aggregate_name,
                stream.aggregate_id,
                state,
                stream.version,
                stream.first_version,
                location,
                time.time(),
            ),
        )

    async def stream_status(self, aggregate_name: str, aggregate_id: str) -> StreamStatus:
        await self._prepare_lifecycle()
        async with self.read_transaction() as tx:
            stream = await self._read_stream(tx, aggregate_name, aggregate_id)
        return stream.status()

    async def any_changed(self) -> bool:
        # Read without migrating: a database that never used lifecycle has no tables for it.
        async with self.read_transaction() as tx:
            row = await tx.fetchone(
                "SELECT version FROM eventsignal_schema WHERE component = 'lifecycle'"
            )
            if row is None:
                return False
            found = await tx.fetchone("SELECT 1 FROM eventsignal_tombstones LIMIT 1")
        return found is not None

    async def archive(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        await self._prepare_lifecycle()
        key = (aggregate_name, aggregate_id)
        async with self.transaction() as tx:
            await self._lifecycle_begin(tx)
            stream = await self._read_stream(tx, *key)
            stream.refuse_closed()
            await tx.execute(self._q(_TO_ARCHIVE[self.dialect]), key)
            await tx.execute(self._q(_DROP_LIVE[self.dialect]), key)
            await tx.execute(self._q(_SET_VERSION), (ARCHIVED_VERSION, *key))
            await self._mark(tx, stream, "archived", ARCHIVE_TABLE)
        return LifecycleResult(
            operation="archive",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=stream.events,
        )

    async def restore(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        await self._prepare_lifecycle()
        key = (aggregate_name, aggregate_id)
        async with self.transaction() as tx:
            await self._lifecycle_begin(tx)
            stream = await self._read_stream(tx, *key)
            if stream.state == "deleted":
                raise AggregateDeleted(aggregate_name, aggregate_id)
            restored = 0
            if stream.state == "archived":
                await tx.execute(self._q(_restore_statement(self.dialect)), key)
                await tx.execute(self._q(_DROP_ARCHIVED), key)
                await tx.execute(self._q(_SET_VERSION), (stream.version, *key))
                if stream.first_version > 1:
                    await self._mark(tx, stream, "truncated")
                else:
                    await tx.execute(self._q(_UNMARK), key)
                restored = stream.archived
        return LifecycleResult(
            operation="restore",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=restored,
        )

    async def delete(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult:
        await self._prepare_lifecycle()
        key = (aggregate_name, aggregate_id)
        async with self.transaction() as tx:
            await self._lifecycle_begin(tx)
            stream = await self._read_stream(tx, *key)
            if stream.state == "deleted":
                raise AggregateDeleted(aggregate_name, aggregate_id)
            await tx.execute(self._q(_DROP_LIVE[self.dialect]), key)
            await tx.execute(self._q(_DROP_ARCHIVED), key)
            await tx.execute(self._q(_DROP_SNAPSHOT), key)
            await tx.execute(self._q(_SET_VERSION), (DELETED_VERSION, *key))
            await self._mark(tx, stream, "deleted")
            count = stream.events + stream.archived
            position = await self._append_record(
                tx, deletion_record(aggregate_name, aggregate_id, stream.version, count)
            )
            await self._lifecycle_announce(tx, position)
        return LifecycleResult(
            operation="delete",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=count,
            position=position,
        )

    async def _append_record(self, tx: SQLTransaction, record: StoredEvent) -> int:
        """Store the deletion record at a new position (the store's own sequence gives it)."""
        if self.dialect == "sqlite":
            # As the SQLite store writes them: id bytes, microseconds since the epoch.
            event_id: object = record.id.bytes
            timestamp: object = (record.timestamp - _EPOCH) // _MICROSECOND
        else:
            event_id, timestamp = record.id, record.timestamp
        row = await tx.fetchone(
            self._q(
                "INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id, version,"
                " name, timestamp, data, metadata) VALUES (?, ?, ?, 0, ?, ?, ?, '{}')"
                " RETURNING position"
            ),
            (
                event_id,
                record.aggregate_name,
                record.aggregate_id,
                record.name,
                timestamp,
                record.data,
            ),
        )
        assert row is not None
        return int(row[0])

    async def truncate_before(
        self,
        aggregate_name: str,
        aggregate_id: str,
        version: int,
        *,
        snapshot_version: int | None = None,
    ) -> LifecycleResult:
        await self._prepare_lifecycle()
        key = (aggregate_name, aggregate_id)
        async with self.transaction() as tx:
            await self._lifecycle_begin(tx)
            stream = await self._read_stream(tx, *key)
            stream.refuse_closed()
            if snapshot_version is None:
                row = await tx.fetchone(self._q(_SNAPSHOT_VERSION), key)
                snapshot_version = None if row is None else int(row[0])
            check_truncation(
                aggregate_name, aggregate_id, version, stream.version, snapshot_version
            )
            dropped = await tx.execute(self._q(_DROP_BEFORE[self.dialect]), (*key, version))
            if dropped:
                stream.first_version = max(stream.first_version, version)
                await self._mark(tx, stream, "truncated")
        return LifecycleResult(
            operation="truncate",
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            events=dropped,
        )
