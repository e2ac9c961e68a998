"""The SQLite schema as data: numbered migrations per component, applied in one transaction.

Each component (``"events"`` here; subscriptions, snapshots and read models bring their own) keeps
its version in ``eventsignal_schema``. A migration is a list of statements taking a component from
version ``i`` to ``i + 1``. Applying runs under ``BEGIN IMMEDIATE``, so two processes migrating at
once serialize on SQLite's write lock and the second finds nothing left to do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventsignal.domain.errors import StoreNotMigrated

EVENTS = "events"

# Times are integers: microseconds since the Unix epoch, UTC. Exact, compact and ordered.
EVENTS_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE eventsignal_aggregates (
            aggregate_name TEXT NOT NULL,
            aggregate_id TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (aggregate_name, aggregate_id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE eventsignal_events (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id BLOB NOT NULL UNIQUE,
            aggregate_name TEXT NOT NULL,
            aggregate_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            data BLOB NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            UNIQUE (aggregate_name, aggregate_id, version)
        )
        """,
    ),
)

_CREATE_SCHEMA_TABLE = """
    CREATE TABLE IF NOT EXISTS eventsignal_schema (
        component TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    )
"""


def schema_version(connection: sqlite3.Connection, component: str) -> int:
    """The version ``component`` reached in this database; 0 if it was never migrated."""
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'eventsignal_schema'"
    ).fetchall()
    if not has_table:
        return 0
    rows = connection.execute(
        "SELECT version FROM eventsignal_schema WHERE component = ?", (component,)
    ).fetchall()
    return int(rows[0][0]) if rows else 0


def apply_migrations(
    connection: sqlite3.Connection, component: str, migrations: Sequence[Sequence[str]]
) -> int:
    """Bring ``component`` up to ``len(migrations)`` in one transaction; return the old version.

    ``connection`` must be in autocommit mode (``isolation_level=None``) and outside a transaction.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        current = migrate_in_transaction(connection, component, migrations)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return current


def migrate_in_transaction(
    connection: sqlite3.Connection, component: str, migrations: Sequence[Sequence[str]]
) -> int:
    """:func:`apply_migrations` inside the write transaction ``connection`` holds already (which
    serializes it with every other writer); return the old version."""
    connection.execute(_CREATE_SCHEMA_TABLE)
    current = schema_version(connection, component)
    if current > len(migrations):
        raise StoreNotMigrated(
            f"the database holds schema version {current} of {component!r}, newer than the "
            f"{len(migrations)} this code knows: upgrade eventsignal",
            component=component,
            found=current,
            expected=len(migrations),
        )
    for statements in migrations[current:]:
        for statement in statements:
            connection.execute(statement)
    if current < len(migrations):
        connection.execute(
            "INSERT INTO eventsignal_schema (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, len(migrations)),
        )
    return current
