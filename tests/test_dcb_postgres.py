"""The DCB view of PostgresStore: the compliance suite, a database made before DCB existed,
group commit of disjoint conditions, and writers in several processes racing on one boundary."""

from __future__ import annotations

import pytest

from eventsignal.stores import EventStore, PostgresStore
from eventsignal.testing import DcbCompliance

pytestmark = pytest.mark.postgres


class TestPostgresDcb(DcbCompliance):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn  # a fresh schema for every check

    async def make_store(self) -> EventStore:
        store = PostgresStore(self.dsn, migrate=True, max_size=4)
        await store.open()
        return store
