"""The DCB view of PostgresStore: the compliance suite, a database made before DCB existed,
group commit of disjoint conditions, and writers in several processes racing on one boundary."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import psycopg
import pytest
from conftest import PostgresStoreFactory
from psycopg.conninfo import make_conninfo

from eventsignal.dcb import (
    AppendCondition,
    AppendConditionFailed,
    DcbEvent,
    Query,
    QueryItem,
    view,
)
from eventsignal.stores import EventStore, PostgresStore
from eventsignal.testing import DcbCompliance, make_events

pytestmark = pytest.mark.postgres


class TestPostgresDcb(DcbCompliance):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn  # a fresh schema for every check

    async def make_store(self) -> EventStore:
        store = PostgresStore(self.dsn, migrate=True, max_size=4)
        await store.open()
        return store


async def test_disjoint_conditions_share_one_commit(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        dcb = view(store)
        await dcb.append(DcbEvent("Warmed", b"{}"))  # the schema component is in place
        before = store.stats
        positions = await asyncio.gather(
            *(
                dcb.append(DcbEvent("Taken", b"{}", [f"seat-{n}"]), when_new(f"seat-{n}"))
                for n in range(50)
            )
        )
        after = store.stats
        assert len(set(positions)) == 50
        assert after.appends - before.appends == 50
        assert after.transactions - before.transactions < 10  # batches, not one commit each


async def test_clients_appending_again_and_again_keep_sharing_commits(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """Clients woken by one batch append again together: none of them goes alone, which would
    leave the others a batch of their own and double the commits."""
    async with await postgres_store_factory() as store:
        dcb = view(store)
        await dcb.append(DcbEvent("Warmed", b"{}"))

        async def client(n: int) -> None:
            last: int | None = None
            for _ in range(6):
                condition = AppendCondition(Query([QueryItem(tags=[f"seat-{n}"])]), after=last)
                last = await dcb.append(DcbEvent("Taken", b"{}", [f"seat-{n}"]), condition)

        before = store.stats
        await asyncio.gather(*(client(n) for n in range(32)))
        after = store.stats
        assert after.appends - before.appends == 32 * 6
        assert after.transactions - before.transactions <= 9  # 6 rounds, and a few splits


async def test_conflicting_requests_in_one_queue_are_never_both_committed(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        dcb = view(store)
        await dcb.append(DcbEvent("Warmed", b"{}"))
        before = store.stats.transactions
        outcomes = await asyncio.gather(
            *(
                dcb.append(DcbEvent("Taken", b"{}", ["seat", f"by-{n}"]), when_new("seat"))
                for n in range(20)
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(o, int) for o in outcomes) == 1
        assert sum(isinstance(o, AppendConditionFailed) for o in outcomes) == 19
        # The losers are told in the winner's batch, not one commit each.
        assert store.stats.transactions - before < 5


async def test_two_stores_racing_on_one_boundary_commit_once(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    first, second = await postgres_store_factory(), await postgres_store_factory()
    async with first, second:
        for n in range(10):
            condition = when_new(f"seat-{n}")
            outcomes = await asyncio.gather(
                view(first).append(DcbEvent("Taken", b"{}", [f"seat-{n}"]), condition),
                view(second).append(DcbEvent("Taken", b"{}", [f"seat-{n}"]), condition),
                return_exceptions=True,
            )
            assert sum(isinstance(o, int) for o in outcomes) == 1
            assert sum(isinstance(o, AppendConditionFailed) for o in outcomes) == 1


async def test_a_database_made_before_dcb_reads_its_aggregates_by_tag(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as old:
        await old.create("course", "c1", make_events("c1", 0, 2, aggregate_name="course"))
        async with old.transaction() as tx:
            assert await tx.fetchone("SELECT to_regclass('eventsignal_tags')") == (None,)
    async with await postgres_store_factory(migrate=False) as store:
        dcb = view(store)
        read = await dcb.read(Query([QueryItem(tags=["course:c1"])]))
        assert [e.event.type for e in read] == ["Happened", "Happened"]
        position = await dcb.append(
            DcbEvent("Noted", b"{}", ["course:c1"]),
            AppendCondition(Query([QueryItem(tags=["course:c1"])]), after=read[-1].position),
        )
        await store.append("course", "c1", 2, make_events("c1", 2, 1, aggregate_name="course"))
        every = await store.read_all()
        assert [e.position for e in every][-2] == position
        assert [e.name for e in every] == ["Happened", "Happened", "Noted", "Happened"]


async def test_appends_go_on_after_the_server_forgets_prepared_statements(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """A transaction of the store may drop the statements prepared on its connection; the next
    append on that connection prepares its own again."""
    async with await postgres_store_factory(max_size=1) as store:  # one connection for all
        dcb = view(store)
        first = await dcb.append(DcbEvent("Taken", b"{}", ["seat"]), when_new("seat"))
        async with store.transaction() as tx:
            await tx.execute("DEALLOCATE ALL")
        second = await dcb.append(
            DcbEvent("Taken", b"{}", ["seat"]),
            AppendCondition(Query([QueryItem(tags=["seat"])]), after=first),
        )
        with pytest.raises(AppendConditionFailed):
            await dcb.append(DcbEvent("Taken", b"{}", ["seat"]), when_new("seat"))
        assert [e.position for e in await dcb.read(Query([QueryItem(tags=["seat"])]))] == [
            first,
            second,
        ]


async def test_appends_go_on_after_the_server_ends_the_writers_connection(
    postgres_dsn: str,
) -> None:
    """The connection kept between batches may be ended by the server while idle: the next
    append takes another, and closing the store leaves no connection open."""
    name = f"dcb-writer-{uuid4().hex[:8]}"
    dsn = make_conninfo(postgres_dsn, application_name=name)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:

        async def connections(*, end: bool = False) -> int:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            if end:
                query = (
                    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                    " WHERE application_name = %s"
                )
            row = await (await admin.execute(query, (name,))).fetchone()
            assert row is not None
            return int(row[0])

        async with PostgresStore(dsn, migrate=True, max_size=2) as store:
            dcb = view(store)
            first = await dcb.append(DcbEvent("Taken", b"{}", ["seat"]), when_new("seat"))
            assert await connections(end=True) >= 1
            second = await dcb.append(
                DcbEvent("Taken", b"{}", ["seat"]),
                AppendCondition(Query([QueryItem(tags=["seat"])]), after=first),
            )
            assert second > first
        for _ in range(100):  # a backend ends a moment after its client closed the connection
            if await connections() == 0:
                break
            await asyncio.sleep(0.05)
        assert await connections() == 0


def when_new(tag: str) -> AppendCondition:
    return AppendCondition(Query([QueryItem(tags=[tag])]))
