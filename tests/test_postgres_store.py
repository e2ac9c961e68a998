"""PostgresStore: the compliance suite, Signal end to end, group commit, global order, schema."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import msgspec
import psycopg
import pytest
from accounts import Account, Deposit, DepositTwice, config
from conftest import PostgresStoreFactory

from eventsignal import (
    AggregateExists,
    AggregateNotFound,
    ConcurrencyError,
    EventSerializationError,
    InvalidAggregateId,
    Signal,
    SignalError,
)
from eventsignal.stores import PostgresStore, StoredEvent
from eventsignal.stores.postgres import link as postgres_link
from eventsignal.stores.postgres import store as postgres_module
from eventsignal.stores.postgres.schema import EVENTS_MIGRATIONS, migrate_component
from eventsignal.stores.sql import SQLStore
from eventsignal.testing import (
    EventStoreCompliance,
    SubscriptionStoreCompliance,
    TenantCompliance,
    make_events,
)

pytestmark = pytest.mark.postgres


class _FreshSchema:
    """A compliance suite's store: a fresh schema for every check."""

    @pytest.fixture(autouse=True)
    def _database(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn

    async def make_store(self) -> PostgresStore:
        store = PostgresStore(self.dsn, migrate=True, max_size=4)
        await store.open()
        return store


class TestPostgresStore(_FreshSchema, EventStoreCompliance):
    pass


class TestPostgresStoreSubscriptions(_FreshSchema, SubscriptionStoreCompliance):
    pass


class TestPostgresTenants(_FreshSchema, TenantCompliance):
    pass


# Signal end to end


async def test_signal_rebuilds_after_restart(postgres_store_factory: PostgresStoreFactory) -> None:
    async with Signal(config(), store=await postgres_store_factory()) as signal:
        account = await signal.create("a-1")
        await account.handle_command(Deposit(5))
        await account.handle_command(DepositTwice(10))
    async with Signal(config(), store=await postgres_store_factory()) as signal:
        account = await signal.aggregate("a-1")
        assert account.state == Account(balance=25, history=(5, 10, 10))
        assert account.version == 3
        with pytest.raises(AggregateExists):
            await signal.create("a-1")


async def test_second_signal_cannot_create_a_taken_id(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    first = Signal(config(), store=await postgres_store_factory())
    second = Signal(config(), store=await postgres_store_factory())
    async with first, second:
        await first.create("a-1")
        with pytest.raises(AggregateExists):
            await second.create("a-1")


async def test_two_signals_racing_one_aggregate_lose_no_update(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    first = Signal(config(), store=await postgres_store_factory(), conflict_retries=100)
    second = Signal(config(), store=await postgres_store_factory(), conflict_retries=100)
    async with first, second:
        await first.create("a-1")

        async def deposit(signal: Signal[Account, object], amount: int) -> None:
            for _ in range(20):
                await signal.handle_command("a-1", Deposit(amount))

        await asyncio.gather(deposit(first, 1), deposit(second, 100))
    async with Signal(config(), store=await postgres_store_factory()) as fresh:
        account = await fresh.aggregate("a-1")
        assert account.state.balance == 20 * 1 + 20 * 100
        assert account.version == 40


async def test_undecodable_row_names_aggregate_version_and_event(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    store = await postgres_store_factory()
    async with Signal(config(), store=store) as signal:
        await (await signal.create("a-1")).handle_command(Deposit(5))
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id, version,"
                " name, timestamp, data) VALUES (%s, 'account', 'a-1', 2, 'Deposited', now(), %s)",
                (uuid4(), b"{not json"),
            )
            await tx.execute("UPDATE eventsignal_aggregates SET version = 2")
    async with Signal(config(), store=await postgres_store_factory()) as signal:
        with pytest.raises(EventSerializationError) as broken:
            await signal.aggregate("a-1")
    assert (broken.value.aggregate_id, broken.value.version) == ("a-1", 2)
    assert broken.value.event_name == "Deposited"


# Group commit


async def test_concurrent_appends_share_transactions(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        ids = [f"a-{n}" for n in range(64)]
        for aggregate_id in ids:
            await store.create("thing", aggregate_id)
        before = store.stats
        results = await asyncio.gather(
            *(store.append("thing", i, 0, make_events(i, 0, 2)) for i in ids)
        )
        assert len({p for positions in results for p in positions}) == 128
        assert store.stats.transactions - before.transactions <= 4
        assert store.stats.appends - before.appends == 64
        assert store.stats.events - before.events == 128
        for aggregate_id, positions in zip(ids, results, strict=True):
            stored = await store.read_aggregate("thing", aggregate_id)
            assert [e.position for e in stored] == list(positions)


@pytest.mark.skipif(not postgres_link.PIPELINE, reason="needs libpq's pipeline mode")
async def test_a_refused_batch_leaves_the_batch_sent_behind_it_alone(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """Many appends at once go out as two batches, the second sent while the first runs: the
    first refused by the database (then retried request by request) leaves the second whole."""
    async with await postgres_store_factory() as store:
        ids = [f"a-{n}" for n in range(64)]
        for aggregate_id in ids:
            await store.create("thing", aggregate_id)
        await store.create("thing", "first", make_events("first", 0, 1))
        taken = (await store.read_aggregate("thing", "first"))[0].id
        before = store.stats.transactions

        def events(n: int, aggregate_id: str) -> list[StoredEvent]:
            made = make_events(aggregate_id, 0, 1)
            return [msgspec.structs.replace(made[0], id=taken)] if n == 2 else made

        outcomes = await asyncio.gather(
            *(store.append("thing", i, 0, events(n, i)) for n, i in enumerate(ids)),
            return_exceptions=True,
        )
        for n, outcome in enumerate(outcomes):
            assert isinstance(outcome, psycopg.IntegrityError) == (n == 2)
        # The first half's 31 others, one by one; the second half in one transaction.
        assert store.stats.transactions - before == 31 + 1
        positions = set()
        for aggregate_id, outcome in zip(ids, outcomes, strict=True):
            stored = [e.position for e in await store.read_aggregate("thing", aggregate_id)]
            assert stored == ([] if isinstance(outcome, BaseException) else list(outcome))
            positions.update(stored)
        assert len(positions) == 63


async def test_an_append_after_a_refused_batch_sees_its_retried_requests(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """A batch retried request by request goes before a later append to one of its aggregates,
    even one made while the batch was in flight."""
    async with await postgres_store_factory() as store:
        await store.create("thing", "a")
        await store.create("thing", "first", make_events("first", 0, 1))
        taken = (await store.read_aggregate("thing", "first"))[0].id
        reused = [msgspec.structs.replace(make_events("a", 0, 1)[0], id=taken)]
        created = asyncio.ensure_future(store.create("thing", "b", make_events("b", 0, 1)))
        refused = asyncio.ensure_future(store.append("thing", "a", 0, reused))
        await asyncio.sleep(0)  # their batch is sent
        follows = asyncio.ensure_future(store.append("thing", "b", 1, make_events("b", 1, 1)))
        outcomes = await asyncio.gather(created, refused, follows, return_exceptions=True)
        assert isinstance(outcomes[1], psycopg.IntegrityError)
        assert not isinstance(outcomes[0], BaseException)
        assert not isinstance(outcomes[2], BaseException)
        assert [e.version for e in await store.read_aggregate("thing", "b")] == [1, 2]


async def test_without_pipeline_mode_batches_go_one_at_a_time(
    postgres_store_factory: PostgresStoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a libpq older than 14 gets: the same outcomes, one batch in flight."""
    monkeypatch.setattr(postgres_link, "PIPELINE", False)
    monkeypatch.setattr(postgres_module, "PIPELINE", False)
    async with await postgres_store_factory() as store:
        ids = [f"a-{n}" for n in range(64)]
        for aggregate_id in ids:
            await store.create("thing", aggregate_id)
        before = store.stats.transactions
        outcomes = await asyncio.gather(
            *(store.append("thing", i, 0, make_events(i, 0, 1)) for i in ids),
            store.append("thing", "a-0", 0, make_events("a-0", 0, 1)),  # after the first
            return_exceptions=True,
        )
        assert isinstance(outcomes[-1], ConcurrencyError)
        assert store.stats.transactions - before == 1
        assert [len(await store.read_aggregate("thing", i)) for i in ids] == [1] * 64


async def test_a_conflict_fails_only_its_own_request(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        for aggregate_id in ("a", "b", "c"):
            await store.create("thing", aggregate_id)
        await store.append("thing", "b", 0, make_events("b", 0, 1))
        before = store.stats.transactions
        outcomes = await asyncio.gather(
            store.append("thing", "a", 0, make_events("a", 0, 2)),
            store.append("thing", "b", 0, make_events("b", 0, 1)),  # b is at version 1
            store.append("thing", "a", 0, make_events("a", 0, 1)),  # a moved on just before
            store.append("thing", "nope", 0, make_events("nope", 0, 1)),
            store.append("thing", "a", 2, make_events("a", 2, 1)),  # follows the first
            store.append("thing", "c", 0, make_events("c", 0, 3)),
            return_exceptions=True,
        )
        assert store.stats.transactions - before == 1  # all of them in one batch
        a_first, b_stale, a_stale, missing, a_next, c_ok = outcomes
        assert isinstance(b_stale, ConcurrencyError)
        assert b_stale.actual_version == 1
        assert isinstance(a_stale, ConcurrencyError)
        assert a_stale.actual_version == 2
        assert isinstance(missing, AggregateNotFound)
        assert not isinstance(a_first, BaseException)
        assert not isinstance(a_next, BaseException)
        assert not isinstance(c_ok, BaseException)
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3]
        assert [e.version for e in await store.read_aggregate("thing", "b")] == [1]
        assert [e.version for e in await store.read_aggregate("thing", "c")] == [1, 2, 3]
        assert list(a_first) + list(a_next) == sorted([*a_first, *a_next])


async def test_a_request_the_database_refuses_fails_alone(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        for aggregate_id in ("a", "b", "c"):
            await store.create("thing", aggregate_id)
        reused = make_events("b", 0, 1)[0]
        await store.append("thing", "a", 0, make_events("a", 0, 1))
        # Metadata every store refuses is stopped before the database; an event id used twice
        # is something only the database sees.
        taken = (await store.read_aggregate("thing", "a"))[0].id
        unstorable = [msgspec.structs.replace(make_events("c", 0, 1)[0], id=taken)]
        outcomes = await asyncio.gather(
            store.append("thing", "a", 1, make_events("a", 1, 1)),
            store.append("thing", "b", 0, [reused]),
            store.append("thing", "c", 0, unstorable),
            store.append("thing", "b", 1, [msgspec.structs.replace(reused, version=2)]),
            return_exceptions=True,
        )
        fine, first_b, refused, reused_id = outcomes
        assert not isinstance(fine, BaseException)
        assert not isinstance(first_b, BaseException)
        assert isinstance(refused, psycopg.IntegrityError)
        assert isinstance(reused_id, psycopg.IntegrityError)  # not a version conflict
        assert [len(await store.read_aggregate("thing", i)) for i in "abc"] == [2, 1, 0]


async def test_every_outcome_in_one_batch_of_distinct_aggregates(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """Each aggregate named once: the batch is checked as a whole, each request still alone."""
    async with await postgres_store_factory() as store:
        for aggregate_id in ("a", "b", "c", "taken"):
            await store.create("thing", aggregate_id)
        await store.append("thing", "b", 0, make_events("b", 0, 2))
        before = store.stats.transactions
        outcomes = await asyncio.gather(
            store.append("thing", "a", 0, make_events("a", 0, 2)),
            store.append("thing", "b", 1, make_events("b", 1, 1)),  # b is at version 2
            store.append("thing", "nope", 0, make_events("nope", 0, 1)),
            store.create("thing", "taken", make_events("taken", 0, 1)),
            store.create("thing", "new", make_events("new", 0, 2)),
            store.create("thing", "empty"),
            store.append("thing", "c", 0, []),
            return_exceptions=True,
        )
        assert store.stats.transactions - before == 1
        a_ok, b_stale, missing, taken, new, empty, c_none = outcomes
        assert isinstance(b_stale, ConcurrencyError)
        assert b_stale.actual_version == 2
        assert isinstance(missing, AggregateNotFound)
        assert isinstance(taken, AggregateExists)
        assert (empty, c_none) == ([], [])
        assert not isinstance(a_ok, BaseException)
        assert not isinstance(new, BaseException)
        assert len(a_ok) == len(new) == 2
        assert a_ok[-1] < new[0]  # positions follow the order of the requests
        versions = {i.aggregate_id: i.version for i in await store.aggregates("thing")}
        assert versions == {"a": 2, "b": 2, "c": 0, "taken": 0, "new": 2, "empty": 0}
        assert [e.position for e in await store.read_aggregate("thing", "new")] == list(new)
        assert await store.read_aggregate("thing", "taken") == []


async def test_creations_share_the_batch_and_are_atomic(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        before = store.stats.transactions
        first, taken, then = await asyncio.gather(
            store.create("thing", "a", make_events("a", 0, 2)),
            store.create("thing", "a", make_events("a", 0, 3)),
            store.append("thing", "a", 2, make_events("a", 2, 1)),  # sees the creation before it
            return_exceptions=True,
        )
        assert store.stats.transactions - before == 1
        assert isinstance(taken, AggregateExists)
        assert not isinstance(first, BaseException)
        assert not isinstance(then, BaseException)
        assert [*first, *then] == [e.position for e in await store.read_aggregate("thing", "a")]
        assert [(a.aggregate_id, a.version) for a in await store.aggregates()] == [("a", 3)]
        assert await store.create("thing", "b") == []


async def test_signal_genesis_on_postgres(postgres_store_factory: PostgresStoreFactory) -> None:
    async with Signal(config(), store=await postgres_store_factory()) as signal:
        account = await signal.create("a-1", DepositTwice(4))
        assert (account.state.balance, account.version) == (8, 2)
        with pytest.raises(AggregateExists):
            await signal.create("a-1", Deposit(1))
    async with Signal(config(), store=await postgres_store_factory()) as signal:
        assert (await signal.aggregate("a-1")).state.history == (4, 4)


async def test_store_serialises_conflicts_across_processes(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """Two stores (two pools, as two processes would have): exactly one append wins."""
    first, second = await postgres_store_factory(), await postgres_store_factory()
    async with first, second:
        await first.create("thing", "a")
        for version in range(10):
            results = await asyncio.gather(
                first.append("thing", "a", version, make_events("a", version, 1)),
                second.append("thing", "a", version, make_events("a", version, 1)),
                return_exceptions=True,
            )
            assert sum(not isinstance(r, BaseException) for r in results) == 1
            assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
        assert len(await first.read_aggregate("thing", "a")) == 10


# Global order: the sequence-gap race


async def test_follower_never_skips_an_event(postgres_store_factory: PostgresStoreFactory) -> None:
    """Writers on several stores commit concurrently while a follower pages through read_all.

    Without a global append order, a transaction that took position 7 but committed after the
    one that took 8 is invisible when the follower reads 8, and the follower skips it forever.
    """
    writers = [await postgres_store_factory(max_size=3) for _ in range(4)]
    follower = await postgres_store_factory(max_size=2)
    for store in [*writers, follower]:
        await store.open()
    seen: list[StoredEvent] = []
    done = asyncio.Event()

    async def write(store: PostgresStore, worker: int) -> None:
        aggregate_id = f"w-{worker}"
        await store.create("thing", aggregate_id)
        version = 0
        for round_ in range(25):
            count = 1 + round_ % 3
            await store.append(
                "thing", aggregate_id, version, make_events(aggregate_id, version, count)
            )
            version += count

    async def follow() -> None:
        after = 0
        while True:
            page = await follower.read_all(after, 50)
            seen.extend(page)
            if page:
                after = page[-1].position
            elif done.is_set() and after == await follower.head_position():
                return
            else:
                try:
                    async with asyncio.timeout(0.2):
                        await follower.wait_for_events(after)
                except TimeoutError:
                    pass

    reader = asyncio.create_task(follow())
    await asyncio.gather(*(write(writers[n % 4], n) for n in range(16)))
    done.set()
    async with asyncio.timeout(30):
        await reader
    everything: list[StoredEvent] = []
    while page := await follower.read_all(everything[-1].position if everything else 0, 1000):
        everything.extend(page)
    assert len(everything) == 16 * sum(1 + round_ % 3 for round_ in range(25))
    assert [e.id for e in seen] == [e.id for e in everything]


@pytest.mark.parametrize("schema", [None, "s" * 63], ids=["default", "long-schema-name"])
async def test_other_stores_wake_followers_through_notify(
    postgres_store_factory: PostgresStoreFactory, schema: str | None
) -> None:
    writer = await postgres_store_factory(schema=schema)
    follower = await postgres_store_factory(schema=schema)
    async with writer, follower:
        await writer.create("thing", "a")
        waiting = asyncio.create_task(follower.wait_for_events(0))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await writer.append("thing", "a", 0, make_events("a", 0, 1))
        async with asyncio.timeout(0.5):  # well before the one-second safety poll
            await waiting


async def test_a_store_listens_from_its_first_follower_on(postgres_dsn: str) -> None:
    """A store that only writes holds no listening connection (its own commits would come back
    to it as notifications to read), only the pool's and the one its group commits go through;
    the first follower opens it, and is woken through it."""
    name = f"writer-{uuid4().hex[:8]}"

    async def connections() -> int:
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, application_name=name)
    async with PostgresStore(dsn, migrate=True, min_size=1, max_size=1) as store:
        await store.create("thing", "a", make_events("a", 0, 2))
        assert await connections() == 2  # the pool's one and the append link's

        head = await store.head_position()
        waiting = asyncio.create_task(store.wait_for_events(head))
        for _ in range(250):  # the listening connection opens in the background
            if await connections() == 3:
                break
            await asyncio.sleep(0.02)
        assert await connections() == 3
        async with PostgresStore(postgres_dsn) as other:
            await other.append("thing", "a", 2, make_events("a", 2, 1))
        async with asyncio.timeout(0.5):  # well before the one-second safety poll
            await waiting


async def test_followers_wake_without_a_notification(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """A row committed without NOTIFY (or while the listener was down) is found by the poll."""
    async with await postgres_store_factory(poll_interval=0.1) as store:
        waiting = asyncio.create_task(store.wait_for_events(0))
        await asyncio.sleep(0.05)
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id, version,"
                " name, timestamp, data) VALUES (%s, 'thing', 'x', 1, 'Happened', now(), '')",
                (uuid4(),),
            )
        async with asyncio.timeout(2):
            await waiting


# Schema and SQL access


async def test_unmigrated_database_says_how_to_migrate(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    store = await postgres_store_factory(migrate=False)
    with pytest.raises(SignalError, match=r"await store\.migrate\(\)") as unmigrated:
        await store.open()
    assert "eventsignal migrate" in str(unmigrated.value)
    assert not store.is_open
    await store.migrate()
    async with store:
        assert await store.head_position() == 0


async def test_concurrent_migrations_are_safe_and_idempotent(postgres_dsn: str) -> None:
    schema = f"s_{uuid4().hex[:8]}"
    stores = [PostgresStore(postgres_dsn, schema=schema) for _ in range(4)]
    await asyncio.gather(*(store.migrate() for store in stores))
    await stores[0].migrate()
    steps = [["CREATE TABLE things (id TEXT PRIMARY KEY)"]]
    await asyncio.gather(*(store.migrate_component("things", steps) for store in stores))
    steps.append(["ALTER TABLE things ADD COLUMN note TEXT"])
    await stores[1].migrate_component("things", steps)
    await stores[2].migrate_component("things", steps)
    async with stores[0] as store, store.transaction() as tx:
        versions = await tx.fetchall("SELECT component, version FROM eventsignal_schema")
        assert sorted(versions) == [("events", len(EVENTS_MIGRATIONS)), ("things", 2)]
        await tx.execute("INSERT INTO things (id, note) VALUES (%s, %s)", ("x", "fine"))
    with pytest.raises(SignalError, match="newer"):
        await stores[3].migrate_component("things", steps[:1])


async def test_a_database_of_the_first_schema_version_keeps_working_once_migrated(
    postgres_dsn: str, postgres_store_factory: PostgresStoreFactory
) -> None:
    """Events written by the version-1 ``eventsignal_append`` read back, and appends go on."""
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        assert await migrate_component(conn, "events", EVENTS_MIGRATIONS[:1]) == 1
        first, second = make_events("a", 0, 2)
        row = await (
            await conn.execute(
                "SELECT outcomes, positions FROM eventsignal_append(1, 'old', %s::text[],"
                " %s::text[], %s::int4[], %s::int4[], %s::bool[], %s::int4[], %s::uuid[],"
                " %s::int4[], %s::text[], %s::timestamptz[], %s::bytea[], %s::text[])",
                (
                    ["thing", "thing"],
                    ["a", "b"],
                    [0, 0],
                    [2, 0],
                    [True, True],
                    [1, 1],
                    [first.id, second.id],
                    [1, 2],
                    [first.name, second.name],
                    [first.timestamp, second.timestamp],
                    [first.data, second.data],
                    ['{"k": "v"}', "{}"],
                ),
            )
        ).fetchone()
        assert row == ([-1, -1], [1, 2])
    with pytest.raises(SignalError, match=r"version 1 of"):
        async with await postgres_store_factory(migrate=False):
            pass
    async with await postgres_store_factory() as store:
        old = await store.read_aggregate("thing", "a")
        assert [(e.id, e.version, e.metadata) for e in old] == [
            (first.id, 1, {"k": "v"}),
            (second.id, 2, {}),
        ]
        assert await store.exists("thing", "b")
        with pytest.raises(AggregateExists):
            await store.create("thing", "a")
        with pytest.raises(ConcurrencyError):
            await store.append("thing", "a", 1, make_events("a", 1, 1))
        positions = await store.append("thing", "a", 2, make_events("a", 2, 2))
        assert positions == [3, 4]
        assert [e.version for e in await store.read_all(0)] == [1, 2, 3, 4]
        info = {i.aggregate_id: i.version for i in await store.aggregates("thing")}
        assert info == {"a": 4, "b": 0}


async def test_transaction_commits_or_rolls_back(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    async with await postgres_store_factory() as store:
        assert isinstance(store, SQLStore)
        assert store.dialect == "postgres"
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE seen (n INTEGER PRIMARY KEY)")
            await tx.executemany("INSERT INTO seen VALUES (%s)", [(1,), (2,)])

        async def fail_after_insert() -> None:
            async with store.transaction() as tx:
                assert await tx.execute("INSERT INTO seen VALUES (%s)", (3,)) == 1
                raise RuntimeError("the consumer failed")

        with pytest.raises(RuntimeError):
            await fail_after_insert()
        async with store.transaction() as tx:
            assert await tx.fetchall("SELECT n FROM seen ORDER BY n") == [(1,), (2,)]
            assert await tx.fetchone("SELECT count(*) FROM seen") == (2,)


async def test_timestamps_come_back_in_utc(postgres_store_factory: PostgresStoreFactory) -> None:
    async with await postgres_store_factory() as store:
        await store.create("thing", "a")
        written = make_events("a", 0, 1)[0]
        local = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        await store.append("thing", "a", 0, [msgspec.structs.replace(written, timestamp=local)])
        (read,) = await store.read_aggregate("thing", "a")
        assert read.timestamp == local
        assert read.timestamp.utcoffset() == timedelta(0)
        assert read.timestamp.tzinfo is UTC or str(read.timestamp.tzinfo) == "UTC"


async def test_ids_and_names_are_validated(postgres_store_factory: PostgresStoreFactory) -> None:
    async with await postgres_store_factory() as store:
        with pytest.raises(InvalidAggregateId):
            await store.create("thing", "x" * 201)
        with pytest.raises(InvalidAggregateId):
            await store.create("bad name; DROP TABLE", "a")
        await store.create("thing", "quote ' and %s are fine")
        assert await store.exists("thing", "quote ' and %s are fine")


def test_stores_import_without_psycopg() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "import eventsignal, eventsignal.stores\n"
        "try:\n    eventsignal.stores.PostgresStore\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "eventsignal[postgres]" in out.stdout
