"""The SQLite schema as data: numbered migrations per component, applied in one transaction.

Each component (``"events"`` here; subscriptions, snapshots and read models bring their own) keeps
its version in ``eventsignal_schema``. A migration is a list of statements taking a component from
version ``i`` to ``i + 1``; a step may also be a function of the connection, for work SQL alone
cannot say (rebuilding a table while keeping the indexes other components made on it). Applying
runs under ``BEGIN IMMEDIATE``, so two processes migrating at once serialize on SQLite's write
lock and the second finds nothing left to do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from eventsignal.domain.errors import StoreNotMigrated

EVENTS = "events"

# A migration step: a statement, or a function of the connection.
Step = str | Callable[[sqlite3.Connection], object]

_AGGREGATES_V2 = """
    CREATE TABLE eventsignal_aggregates_rebuilt (
        aggregate_name TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        tenant TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (tenant, aggregate_name, aggregate_id)
    ) WITHOUT ROWID
"""
_EVENTS_V2 = """
    CREATE TABLE eventsignal_events_rebuilt (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id BLOB NOT NULL UNIQUE,
        aggregate_name TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        name TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data BLOB NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        tenant TEXT NOT NULL DEFAULT '',
        UNIQUE (tenant, aggregate_name, aggregate_id, version)
    )
"""
# Version 3: streams numbered in creation order, and events found by that number. Keyed by name,
# the rows and index entries of the streams written at once lie all over their b-trees, so a commit
# of many streams rewrote about two pages per stream; the streams in use now were mostly made
# lately, so their numbers, and their rows and entries, are close: a few pages per commit. The
# stream's key becomes a unique index, written when a stream is made, not when it grows. An event
# stored without its stream's number gets it from a trigger; one of no stream (a DCB event) has
# none.
_AGGREGATES_V3 = """
    CREATE TABLE eventsignal_aggregates_rebuilt (
        stream INTEGER PRIMARY KEY,
        aggregate_name TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        tenant TEXT NOT NULL DEFAULT '',
        UNIQUE (tenant, aggregate_name, aggregate_id)
    )
"""
_EVENTS_V3 = """
    CREATE TABLE eventsignal_events_rebuilt (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id BLOB NOT NULL UNIQUE,
        aggregate_name TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        name TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data BLOB NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        tenant TEXT NOT NULL DEFAULT '',
        stream INTEGER,
        UNIQUE (stream, version)
    )
"""
# The number of the stream an events row belongs to (a correlated subquery on ``e``).
_STREAM_OF = (
    "(SELECT a.stream FROM eventsignal_aggregates AS a WHERE a.tenant = {e}.tenant"
    " AND a.aggregate_name = {e}.aggregate_name AND a.aggregate_id = {e}.aggregate_id)"
)
_NUMBER_EVENTS = (
    f"UPDATE eventsignal_events SET stream = {_STREAM_OF.format(e='eventsignal_events')}"
)
_NUMBER_NEW_EVENTS = f"""
    CREATE TRIGGER eventsignal_events_stream AFTER INSERT ON eventsignal_events
    WHEN NEW.stream IS NULL AND {_STREAM_OF.format(e="NEW")} IS NOT NULL
    BEGIN
        UPDATE eventsignal_events SET stream = {_STREAM_OF.format(e="NEW")}
        WHERE position = NEW.position;
    END
"""


def rebuild_table(connection: sqlite3.Connection, table: str, create: str) -> None:
    """Replace ``table`` by the one ``create`` makes as ``<table>_rebuilt``, rows, positions and
    the indexes other components made on it included.

    SQLite cannot change a table's keys in place: the rows move to a new table, which then takes
    the old one's name. ``AUTOINCREMENT`` remembers the highest position ever given, even of rows
    deleted since; that memory moves along, so no position is ever given twice.
    """
    rebuilt = f"{table}_rebuilt"
    indexes = [
        row[0]
        for row in connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        )
    ]
    connection.execute(create)
    columns = ", ".join(
        row[1] for row in connection.execute(f"PRAGMA table_info({table})").fetchall()
    )
    connection.execute(f"INSERT INTO {rebuilt} ({columns}) SELECT {columns} FROM {table}")
    has_sequence = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    if has_sequence:
        connection.execute("DELETE FROM sqlite_sequence WHERE name = ?", (rebuilt,))
        connection.execute("UPDATE sqlite_sequence SET name = ? WHERE name = ?", (rebuilt, table))
    connection.execute(f"DROP TABLE {table}")
    connection.execute(f"ALTER TABLE {rebuilt} RENAME TO {table}")
    for index in indexes:
        connection.execute(index)


# Times are integers: microseconds since the Unix epoch, UTC. Exact, compact and ordered.
EVENTS_MIGRATIONS: tuple[tuple[Step, ...], ...] = (
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
    # Version 2: tenants. A tenant beside every stream and event, first in their keys; ``""`` is
    # the default tenant, all the rows written before. Another tenant's log is read through an
    # index of its own; the default tenant's by position, as before, so that its appends cost
    # what they did (no index entry more per event).
    (
        lambda connection: rebuild_table(connection, "eventsignal_aggregates", _AGGREGATES_V2),
        lambda connection: rebuild_table(connection, "eventsignal_events", _EVENTS_V2),
        "CREATE INDEX eventsignal_events_of_tenant ON eventsignal_events (tenant, position) "
        "WHERE tenant <> ''",
    ),
    (
        lambda connection: rebuild_table(connection, "eventsignal_aggregates", _AGGREGATES_V3),
        lambda connection: rebuild_table(connection, "eventsignal_events", _EVENTS_V3),
        _NUMBER_EVENTS,
        _NUMBER_NEW_EVENTS,
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
    connection: sqlite3.Connection, component: str, migrations: Sequence[Sequence[Step]]
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
    connection: sqlite3.Connection, component: str, migrations: Sequence[Sequence[Step]]
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
            if isinstance(statement, str):
                connection.execute(statement)
            else:
                statement(connection)
    if current < len(migrations):
        connection.execute(
            "INSERT INTO eventsignal_schema (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, len(migrations)),
        )
    return current
