"""The DCB view of SQLiteStore: the compliance suite, a database made before DCB existed, and
writers in several processes racing on one boundary."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventsignal.dcb import AppendCondition, DcbEvent, Query, QueryItem, view
from eventsignal.stores import EventStore, SQLiteStore
from eventsignal.testing import DcbCompliance, make_events


class TestSQLiteDcb(DcbCompliance):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"

    async def make_store(self) -> EventStore:
        self.path.unlink(missing_ok=True)
        store = SQLiteStore(self.path, migrate=True)
        await store.open()
        return store


async def test_a_database_made_before_dcb_reads_its_aggregates_by_tag(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with SQLiteStore(path, migrate=True) as old:
        await old.create("course", "c1", make_events("c1", 0, 2, aggregate_name="course"))
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "eventsignal_tags" not in tables  # made by code that knows nothing of DCB
    async with SQLiteStore(path) as store:
        dcb = view(store)
        read = await dcb.read(Query([QueryItem(tags=["course:c1"])]))
        assert [e.position for e in read] == [1, 2]
        position = await dcb.append(
            DcbEvent("Noted", b"{}", ["course:c1"]),
            AppendCondition(Query([QueryItem(tags=["course:c1"])]), after=2),
        )
        assert position == 3
        await store.append("course", "c1", 2, make_events("c1", 2, 1, aggregate_name="course"))
        assert [e.position for e in await store.read_all()] == [1, 2, 3, 4]
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute(
            "SELECT version FROM eventsignal_schema WHERE component = 'dcb'"
        ).fetchone()
    assert version == 1
