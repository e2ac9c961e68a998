"""Stream lifecycle in the SQL databases, read with plain SQL: what is left, and the migration
of a database that older code made (no lifecycle tables yet)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from accounts import Deposit, config

from eventsignal import Signal
from eventsignal.stores import EventStore

Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]
SECRET = b"deposit-of-4242"


def sqlite_query(path: Path) -> Query:
    def query(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as connection:
            return connection.execute(statement, params).fetchall()

    return query


def postgres_query(dsn: str) -> Query:
    import psycopg

    def query(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as connection:
            return connection.execute(statement.replace("?", "%s"), params).fetchall()

    return query


async def check_what_is_left(
    store: EventStore, query: Query, tables: Callable[[], set[str]]
) -> None:
    # A database as older code made it: events, no lifecycle tables, no lifecycle component.
    async with Signal(config(), store=store) as signal:
        await signal.create("a", Deposit(4242))
        await signal.handle_command("a", Deposit(1))
        await signal.create("b", Deposit(7))
    assert "eventsignal_archive" not in tables()
    assert query("SELECT version FROM eventsignal_schema WHERE component = 'lifecycle'", ()) == []

    async with Signal(config(), store=store) as signal:
        await signal.archive("a")
        assert "eventsignal_archive" in tables()
        assert query(
            "SELECT version FROM eventsignal_schema WHERE component = 'lifecycle'", ()
        ) == [(1,)]
        where = " WHERE aggregate_id = 'a'"
        assert query("SELECT count(*) FROM eventsignal_events" + where, ()) == [(0,)]
        assert query("SELECT count(*) FROM eventsignal_archive" + where, ()) == [(2,)]
        [(state, location)] = query(
            "SELECT state, location FROM eventsignal_tombstones" + where, ()
        )
        assert (state, location) == ("archived", "eventsignal_archive")

        await signal.delete("a")
        rows = query("SELECT version, name, data FROM eventsignal_events" + where, ())
        # Only the deletion record is left, and it holds none of the deleted data.
        assert [(version, name) for version, name, _ in rows] == [(0, "eventsignal.StreamDeleted")]
        assert b"4242" not in bytes(rows[0][2])
        assert query("SELECT count(*) FROM eventsignal_archive" + where, ()) == [(0,)]
        assert query("SELECT count(*) FROM eventsignal_snapshots" + where, ()) == [(0,)]
        assert query("SELECT count(*) FROM eventsignal_events WHERE aggregate_id = 'b'", ()) == [
            (1,)
        ]


async def test_sqlite_keeps_nothing_of_a_deleted_stream(tmp_path: Path) -> None:
    from eventsignal.stores import SQLiteStore

    path = tmp_path / "events.db"
    query = sqlite_query(path)

    def tables() -> set[str]:
        return {r[0] for r in query("SELECT name FROM sqlite_master WHERE type = 'table'", ())}

    await check_what_is_left(SQLiteStore(path, migrate=True), query, tables)
    # AUTOINCREMENT: the highest position ever given is remembered, whatever was deleted.
    assert query("SELECT seq FROM sqlite_sequence WHERE name = 'eventsignal_events'", ()) == [
        (query("SELECT max(position) FROM eventsignal_events", ())[0][0],)
    ]


@pytest.mark.postgres
async def test_postgres_keeps_nothing_of_a_deleted_stream(
    postgres_dsn: str, postgres_schema: str, postgres_store_factory: Any
) -> None:
    query = postgres_query(postgres_dsn)

    def tables() -> set[str]:
        rows = query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            (postgres_schema,),
        )
        return {r[0] for r in rows}

    await check_what_is_left(await postgres_store_factory(), query, tables)
