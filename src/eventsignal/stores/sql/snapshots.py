"""Snapshots kept in a SQL event store's own database, beside the events.

Works on any :class:`~eventsignal.stores.sql.SQLStore` (SQLite or PostgreSQL) through its
transaction API, so each SQL backend gets snapshots without code of its own. Each tenant keeps
its own snapshot of its own aggregates (see :mod:`eventsignal.stores.tenancy`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from eventsignal.stores.base import Snapshot
from eventsignal.stores.sql import SQLStore, SQLTransaction, ensure_component, for_dialect
from eventsignal.stores.sql.tenants import SET_TENANT_LOCAL, row_security

COMPONENT = "snapshots"

MIGRATIONS = {
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
        ],
        # Version 2: tenants, first in the key (SQLite changes a key by rebuilding the table).
        [
            """CREATE TABLE eventsignal_snapshots_rebuilt (
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                schema_version INTEGER NOT NULL,
                state BLOB NOT NULL,
                taken_at TEXT NOT NULL,
                tenant TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (tenant, aggregate_name, aggregate_id)
            )""",
            """INSERT INTO eventsignal_snapshots_rebuilt
                (aggregate_name, aggregate_id, version, schema_version, state, taken_at)
                SELECT aggregate_name, aggregate_id, version, schema_version, state, taken_at
                FROM eventsignal_snapshots""",
            "DROP TABLE eventsignal_snapshots",
            "ALTER TABLE eventsignal_snapshots_rebuilt RENAME TO eventsignal_snapshots",
        ],
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
        ],
        # Version 2: tenants, first in the key, and each session kept to its own tenant's rows.
        [
            "ALTER TABLE eventsignal_snapshots ADD COLUMN tenant TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE eventsignal_snapshots DROP CONSTRAINT eventsignal_snapshots_pkey",
            "ALTER TABLE eventsignal_snapshots ADD CONSTRAINT eventsignal_snapshots_pkey"
            " PRIMARY KEY (tenant, aggregate_name, aggregate_id)",
            *row_security("eventsignal_snapshots"),
        ],
    ],
}

# A newer snapshot replaces an older one, never the reverse: snapshots are taken in the
# background and may finish out of order.
_SAVE = """INSERT INTO eventsignal_snapshots
    (aggregate_name, aggregate_id, version, schema_version, state, taken_at, tenant)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (tenant, aggregate_name, aggregate_id) DO UPDATE SET
        version = excluded.version,
        schema_version = excluded.schema_version,
        state = excluded.state,
        taken_at = excluded.taken_at
    WHERE eventsignal_snapshots.version < excluded.version"""

_DELETE = (
    "DELETE FROM eventsignal_snapshots WHERE tenant = ? AND aggregate_name = ? AND aggregate_id = ?"
)

_LOAD = """SELECT version, schema_version, state, taken_at FROM eventsignal_snapshots
    WHERE tenant = ? AND aggregate_name = ? AND aggregate_id = ?"""


class SQLSnapshotStore:
    """A :class:`~eventsignal.stores.SnapshotStore` on the tables of a SQL event store."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self._dialect = store.dialect
        self._save = for_dialect(_SAVE, store.dialect)
        self._load = for_dialect(_LOAD, store.dialect)
        self._delete = for_dialect(_DELETE, store.dialect)
        self._set_tenant = for_dialect(SET_TENANT_LOCAL, store.dialect)

    async def prepare(self) -> None:
        """Create or upgrade the snapshot table (once per store in this process)."""
        await ensure_component(self.store, COMPONENT, MIGRATIONS[self._dialect])

    async def _enter(self, tx: SQLTransaction, tenant: str) -> None:
        """Give a PostgreSQL transaction the tenant's rows (row-level security); the store's
        own transactions start in the default tenant's."""
        if tenant and self._dialect == "postgres":
            await tx.execute(self._set_tenant, (tenant,))

    async def save_snapshot(self, snapshot: Snapshot, *, tenant: str = "") -> None:
        """Keep ``snapshot`` of the aggregate of ``tenant``, unless a newer one is kept."""
        await self.prepare()
        taken_at: object = snapshot.taken_at
        if self._dialect == "sqlite":
            taken_at = snapshot.taken_at.isoformat()
        async with self.store.transaction() as tx:
            await self._enter(tx, tenant)
            await tx.execute(
                self._save,
                (
                    snapshot.aggregate_name,
                    snapshot.aggregate_id,
                    snapshot.version,
                    snapshot.schema_version,
                    snapshot.state,
                    taken_at,
                    tenant,
                ),
            )

    async def delete_snapshot(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = ""
    ) -> None:
        """Drop the aggregate's snapshot, if any (it may hold personal data now forgotten)."""
        await self.prepare()
        async with self.store.transaction() as tx:
            await self._enter(tx, tenant)
            await tx.execute(self._delete, (tenant, aggregate_name, aggregate_id))

    async def load_snapshot(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = ""
    ) -> Snapshot | None:
        """The snapshot kept of the aggregate of ``tenant``, if any."""
        await self.prepare()
        # A read path of its own, where the store has one: loads never queue behind writes.
        async with self.store.read_transaction() as tx:
            await self._enter(tx, tenant)
            row = await tx.fetchone(self._load, (tenant, aggregate_name, aggregate_id))
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
