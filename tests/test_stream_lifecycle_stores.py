"""The lifecycle compliance suite on every store that offers stream lifecycle (the event store
suite runs in each store's own test module)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from eventsignal.stores import EventStore, MemoryStore
from eventsignal.stores.postgres import PostgresStore
from eventsignal.stores.sqlite import SQLiteStore
from eventsignal.testing import LifecycleCompliance


class TestMemoryLifecycle(LifecycleCompliance):
    async def make_store(self) -> EventStore:
        store = MemoryStore()
        await store.open()
        return store


class TestSQLiteLifecycle(LifecycleCompliance):
    async def make_store(self) -> EventStore:
        folder = tempfile.mkdtemp(prefix="eventsignal-lifecycle-")
        store = SQLiteStore(Path(folder) / "events.db", migrate=True)
        await store.open()
        return store

    async def dispose_store(self, store: EventStore) -> None:
        assert isinstance(store, SQLiteStore)
        await store.close()
        shutil.rmtree(Path(store.path).parent)


@pytest.mark.postgres
class TestPostgresLifecycle(LifecycleCompliance):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn  # a fresh schema for every check

    async def make_store(self) -> EventStore:
        store = PostgresStore(self.dsn, migrate=True, max_size=4)
        await store.open()
        return store
