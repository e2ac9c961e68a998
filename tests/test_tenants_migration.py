"""Databases written before tenants existed: their migration keeps every stream, event, snapshot,
position and index, under the default tenant, and other tenants live beside them at once."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PostgresStoreFactory

from eventsignal import SignalError
from eventsignal.dcb import Query, QueryItem, view
from eventsignal.stores import PostgresStore, SQLiteStore, StoredEvent
from eventsignal.stores.postgres.dcb_schema import MIGRATIONS as POSTGRES_DCB
from eventsignal.stores.postgres.schema import EVENTS_MIGRATIONS as POSTGRES_EVENTS
from eventsignal.stores.postgres.schema import migrate_component
from eventsignal.stores.sql.snapshots import MIGRATIONS as SNAPSHOTS
from eventsignal.stores.sql.snapshots import SQLSnapshotStore
from eventsignal.stores.sqlite.dcb import MIGRATIONS as SQLITE_DCB
from eventsignal.stores.sqlite.schema import EVENTS_MIGRATIONS as SQLITE_EVENTS
from eventsignal.stores.sqlite.schema import apply_migrations
from eventsignal.testing import make_events

_OLD_SNAPSHOT = (
    "INSERT INTO eventsignal_snapshots"
    " (aggregate_name, aggregate_id, version, schema_version, state, taken_at)"
    " VALUES ('thing', 'a', 2, 1, ?, ?)"
)


def _identity(events: Any) -> list[tuple[str, str, int, int]]:
    return [(e.tenant, e.aggregate_id, e.version, e.position) for e in events]


async def _check_upgraded(store: SQLiteStore | PostgresStore) -> None:
    """What a database of the previous release holds, read and extended after its migration:
    aggregate ``a`` at version 2 (positions 1 and 2; position 3, given once, then deleted) with a
    snapshot at version 2, and an empty aggregate ``b``."""
    every = store.for_tenant(None)
    assert _identity(await store.read_aggregate("thing", "a")) == [("", "a", 1, 1), ("", "a", 2, 2)]
    assert {(i.tenant, i.aggregate_id, i.version) for i in await every.aggregates()} == {
        ("", "a", 2),
        ("", "b", 0),
    }
    assert list(await store.tenants()) == [""]
    assert list(await store.append("thing", "a", 2, make_events("a", 2, 1))) == [4]  # 3 is used
    acme = store.for_tenant("acme")
    await acme.create("thing", "a", make_events("a", 0, 1))
    assert _identity(await every.read_all()) == [
        ("", "a", 1, 1),
        ("", "a", 2, 2),
        ("", "a", 3, 4),
        ("acme", "a", 1, 5),
    ]
    assert [e.position for e in await store.read_all()] == [1, 2, 4]
    snapshots = SQLSnapshotStore(store)
    kept = await snapshots.load_snapshot("thing", "a")
    assert kept is not None
    assert (kept.version, kept.state) == (2, b"{}")
    assert await acme.load_snapshot("thing", "a") is None
    # DCB still finds the default tenant's aggregate by its tag, and not acme's one.
    found = await view(store).read(Query([QueryItem(tags=["thing:a"])]))
    assert [e.position for e in found] == [1, 2, 4]


def _sqlite_rows(events: list[StoredEvent]) -> list[tuple[Any, ...]]:
    return [
        (n, e.id.bytes, "thing", "a", e.version, e.name, 0, e.data, "{}")
        for n, e in enumerate(events, start=1)
    ]


async def test_a_sqlite_database_of_the_previous_release(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        # The schema the previous release left: events at version 1, DCB's index, snapshots.
        apply_migrations(conn, "events", SQLITE_EVENTS[:1])
        apply_migrations(conn, "dcb", SQLITE_DCB)
        apply_migrations(conn, "snapshots", SNAPSHOTS["sqlite"][:1])
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO eventsignal_aggregates VALUES (?, ?, ?, 0)",
            [("thing", "a", 2), ("thing", "b", 0)],
        )
        conn.executemany(
            "INSERT INTO eventsignal_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _sqlite_rows(make_events("a", 0, 3)),
        )
        conn.execute("DELETE FROM eventsignal_events WHERE position = 3")
        conn.execute(_OLD_SNAPSHOT, (b"{}", "2024-01-01T00:00:00+00:00"))
        conn.execute("COMMIT")
    with pytest.raises(SignalError, match="version 1"):
        async with SQLiteStore(path):
            pass
    async with SQLiteStore(path, migrate=True) as store:
        await _check_upgraded(store)
    with closing(sqlite3.connect(path)) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        versions = dict(conn.execute("SELECT component, version FROM eventsignal_schema"))
    assert {"eventsignal_events_by_name", "eventsignal_events_of_tenant"} <= indexes
    assert versions["events"] == len(SQLITE_EVENTS) == 3
    assert versions["snapshots"] == len(SNAPSHOTS["sqlite"]) == 2


# The call the previous release made for a group-commit batch (its function's signature is kept).
_OLD_APPEND = (
    "SELECT outcomes, positions FROM eventsignal_append(1, 'old', %s::text[], %s::text[],"
    " %s::int4[], %s::int4[], %s::bool[], %s::int4[], %s::uuid[], %s::int4[], %s::text[],"
    " %s::timestamptz[], %s::bytea[], %s::text[])"
)


def _old_append(
    conn: psycopg.Connection[Any], expected: int, count: int, events: list[StoredEvent]
) -> Any:
    params = (
        ["thing"],
        ["a"],
        [expected],
        [count],
        [expected == 0],
        [1] * len(events),
        [e.id for e in events],
        [e.version for e in events],
        [e.name for e in events],
        [e.timestamp for e in events],
        [e.data for e in events],
        ["{}"] * len(events),
    )
    return conn.execute(_OLD_APPEND, params).fetchone()


@pytest.mark.postgres
async def test_a_postgres_database_of_the_previous_release(
    postgres_dsn: str, postgres_store_factory: PostgresStoreFactory
) -> None:
    events = make_events("a", 0, 4)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as aconn:
        # The schema the previous release left: events at version 2, DCB, snapshots.
        await migrate_component(aconn, "events", POSTGRES_EVENTS[:2])
        await migrate_component(aconn, "dcb", POSTGRES_DCB[:1])
        await migrate_component(aconn, "snapshots", SNAPSHOTS["postgres"][:1])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert _old_append(conn, 0, 3, events[:3]) == ([-1], [1, 2, 3])
        conn.execute("DELETE FROM eventsignal_events WHERE position = 3")
        conn.execute("UPDATE eventsignal_aggregates SET version = 2")
        conn.execute(
            "INSERT INTO eventsignal_aggregates (aggregate_name, aggregate_id)"
            " VALUES ('thing', 'b')"
        )
        conn.execute(_OLD_SNAPSHOT.replace("?", "%s"), (b"{}", events[0].timestamp))
    with pytest.raises(SignalError, match="version 2 of"):
        async with await postgres_store_factory(migrate=False):
            pass
    async with await postgres_store_factory() as store:
        await _check_upgraded(store)
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            # A caller of the old signature still appends, to the default tenant.
            outcome = _old_append(conn, 3, 1, [events[3]])
            secured = conn.execute(
                "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity = false"
                " AND relnamespace = current_schema()::regnamespace ORDER BY relname"
            ).fetchall()
        assert outcome == ([-1], [6])
        assert _identity(await store.read_aggregate("thing", "a", 3)) == [("", "a", 4, 6)]
        assert [row[0] for row in secured] == [
            "eventsignal_aggregates",
            "eventsignal_events",
            "eventsignal_snapshots",
        ]
