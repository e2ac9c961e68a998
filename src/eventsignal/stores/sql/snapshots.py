"""Snapshots kept in a SQL event store's own database, beside the events.

Works on any :class:`~eventsignal.stores.sql.SQLStore` (SQLite or PostgreSQL) through its
transaction API, so each SQL backend gets snapshots without code of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

from eventsignal.stores.base import Snapshot
from eventsignal.stores.sql import SQLStore, ensure_component, for_dialect

COMPONENT = "snapshots"

_MIGRATIONS = {
    "sqlite": [
        [
            """CREATE TABLE IF NOT EXISTS eventsignal_snapshots (
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                schema_version INTEGER NOT NULL,
                state BLOB NOT NULL,
                taken_at TEXT NOT NULL,
                PRIMARY KEY (aggregate_name, aggregate_id)
            )""",
        ]
    ],
    "postgres": [
        [
            """CREATE TABLE IF NOT EXISTS eventsignal_snapshots (
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                schema_version INTEGER NOT NULL,
                state BYTEA NOT NULL,
                taken_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (aggregate_name, aggregate_id)
            )""",
        ]
    ],
}

# A newer snapshot replaces an older one, never the reverse: snapshots are taken in the
# background and may finish out of order.
_SAVE = """INSERT INTO eventsignal_snapshots
    (aggregate_name, aggregate_id, version, schema_version, state, taken_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (aggregate_name, aggregate_id) DO UPDATE SET
        version = excluded.version,
        schema_version = excluded.schema_version,
        state = excluded.state,
        taken_at = excluded.taken_at
    WHERE eventsignal_snapshots.version < excluded.version"""

_DELETE = "DELETE FROM eventsignal_snapshots WHERE aggregate_name = ? AND aggregate_id = ?"

_LOAD = """SELECT version, schema_version, state, taken_at FROM eventsignal_snapshots
    WHERE aggregate_name = ? AND aggregate_id = ?"""


class SQLSnapshotStore:
    """A :class:`~eventsignal.stores.SnapshotStore` on the tables of a SQL event store."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self._dialect = store.dialect
        self._save = for_dialect(_SAVE, store.dialect)
        self._load = for_dialect(_LOAD, store.dialect)
        self._delete = for_dialect(_DELETE, store.dialect)

    async def prepare(self) -> None:
        """Create or upgrade the snapshot table (once per store in this process)."""
        await ensure_component(self.store, COMPONENT, _MIGRATIONS[self._dialect])

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self.prepare()
        taken_at: object = snapshot.taken_at
        if self._dialect == "sqlite":
            taken_at = snapshot.taken_at.isoformat()
        async with self.store.transaction() as tx:
            await tx.execute(
                self._save,
                (
                    snapshot.aggregate_name,
                    snapshot.aggregate_id,
                    snapshot.version,
                    snapshot.schema_version,
                    snapshot.state,
                    taken_at,
                ),
            )

    async def delete_snapshot(self, aggregate_name: str, aggregate_id: str) -> None:
        """Drop the aggregate's snapshot, if any (it may hold personal data now forgotten)."""
        await self.prepare()
        async with self.store.transaction() as tx:
            await tx.execute(self._delete, (aggregate_name, aggregate_id))

    async def load_snapshot(self, aggregate_name: str, aggregate_id: str) -> Snapshot | None:
        await self.prepare()
        # A read path of its own, where the store has one: loads never queue behind writes.
        async with self.store.read_transaction() as tx:
            row = await tx.fetchone(self._load, (aggregate_name, aggregate_id))
        if row is None:
            return None
        version, schema_version, state, taken_at = row
        if isinstance(taken_at, str):
            taken_at = datetime.fromisoformat(taken_at)
        return Snapshot(
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            version=version,
            schema_version=schema_version,
            state=bytes(state),
            taken_at=taken_at.astimezone(UTC),
        )
