"""Lean rebuilds (``AggregateConfig(rebuild_envelopes=False)``): the state they reach equals the
live state and the state a rebuild from whole events reaches, from the start or from a snapshot,
on every store that reads less; and what must read whole events still does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from accounts import Account, Close, Deposit, DepositTwice, Withdraw, config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import (
    AggregateConfig,
    AggregateNotFound,
    CommandRejected,
    Event,
    EventSerializationError,
    Signal,
)
from eventsignal.domain.errors import AggregateArchived, HistoryTruncated
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore, StoredEvent
from eventsignal.stores.base import FoldReads, FoldRow

LEAN = config(rebuild_envelopes=False)
WHOLE = config()
_names = itertools.count()


def snapshotted(base: AggregateConfig[Account, Any], every: int) -> AggregateConfig[Account, Any]:
    return dataclasses.replace(base, snapshots=SnapshotPolicy(every=every))


StoreMaker = Callable[[], EventStore]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    """A new store object on the same data at each call (the memory store is one object)."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "events.db", migrate=True)
    from eventsignal.stores.postgres import PostgresStore

    dsn = request.getfixturevalue("postgres_dsn")
    return lambda: PostgresStore(dsn, migrate=True, max_size=2)


class Reads:
    """Counts a store's reads of one aggregate, whole and lean."""

    def __init__(self, store: EventStore) -> None:
        self.whole = 0
        self.lean = 0
        read_whole = store.read_aggregate
        assert isinstance(store, FoldReads)
        read_lean = store.read_aggregate_data

        async def whole(*args: Any, **kwargs: Any) -> Sequence[StoredEvent]:
            self.whole += 1
            return await read_whole(*args, **kwargs)

        async def lean(*args: Any, **kwargs: Any) -> AsyncGenerator[Sequence[FoldRow], None]:
            self.lean += 1
            async with contextlib.aclosing(read_lean(*args, **kwargs)) as chunks:
                async for rows in chunks:
                    yield rows

        store.read_aggregate = whole  # type: ignore[method-assign]
        store.read_aggregate_data = lean  # type: ignore[method-assign]


@contextlib.contextmanager
def counted(store: EventStore) -> Iterator[Reads]:
    reads = Reads(store)
    try:
        yield reads
    finally:
        del store.read_aggregate
        del store.read_aggregate_data  # type: ignore[attr-defined]


# The property, on every store.

commands = st.one_of(
    st.builds(Deposit, st.integers(-5, 50)),
    st.builds(DepositTwice, st.integers(-5, 50)),
    st.builds(Withdraw, st.integers(0, 80)),
    st.just(Close()),
)
steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), commands), max_size=30)


async def _states(signal: Signal[Account, Any], ids: Sequence[str]) -> dict[str, Any]:
    found = {}
    for aggregate_id in ids:
        aggregate = await signal.aggregate(aggregate_id)
        found[aggregate_id] = (aggregate.state, aggregate.version)
    return found


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=steps, every=st.integers(1, 5), concurrent=st.booleans())
def test_lean_rebuilds_equal_the_live_state_and_whole_rebuilds(
    make_store: StoreMaker, steps: list[tuple[str, Any]], every: int, concurrent: bool
) -> None:
    """Live pool == lean rebuild from the store == lean rebuild from a snapshot and its tail ==
    rebuild from whole events."""
    prefix = f"p{next(_names)}-{uuid4().hex[:6]}-"  # each example its own aggregates
    ids = [prefix + i for i in sorted({i for i, _ in steps} | {"a"})]

    async def scenario() -> None:
        store = make_store()
        async with Signal(snapshotted(LEAN, every), store=store, telemetry=None) as live:
            for aggregate_id in ids:
                await live.create(aggregate_id)

            async def send(aggregate_id: str, command: Any) -> None:
                with contextlib.suppress(CommandRejected):
                    await live.handle_command(prefix + aggregate_id, command)

            if concurrent:
                await asyncio.gather(*(send(i, c) for i, c in steps))
            else:
                for i, c in steps:
                    await send(i, c)
            await live.drain()  # the snapshots are stored
            observed = {}
            for aggregate_id in ids:
                handle = await live.aggregate(aggregate_id)
                observed[aggregate_id] = (handle.state, handle.version)
        store = make_store()
        with counted(store) as reads:
            async with Signal(LEAN, store=store, telemetry=None) as lean:
                assert await _states(lean, ids) == observed
            assert (reads.whole, reads.lean) == (0, len(ids))
        store = make_store()
        with counted(store) as reads:
            async with Signal(snapshotted(LEAN, every), store=store, telemetry=None) as tail:
                assert await _states(tail, ids) == observed
                snapshots = tail.pool_stats.snapshot_hits
            assert (reads.whole, reads.lean) == (0, len(ids))
        assert snapshots == sum(version >= every for _, version in observed.values())
        async with Signal(WHOLE, store=make_store(), telemetry=None) as whole:
            assert whole._lean is None
            assert await _states(whole, ids) == observed

    asyncio.run(scenario())


# What the handler is given.


async def test_a_lean_rebuild_hands_version_name_and_data(make_store: StoreMaker) -> None:
    async with Signal(LEAN, store=make_store()) as signal:
        await signal.create("a", Deposit(5))
        await signal.handle_command("a", Withdraw(2), metadata={"by": "ada"})
        await signal.handle_command("a", Close())
    seen: list[Event[Any]] = []

    def apply(account: Account, event: Event[Any]) -> Account:
        seen.append(event)
        return WHOLE.event_handler(account, event)

    store = make_store()
    with counted(store) as reads:
        async with Signal(config(rebuild_envelopes=False, event_handler=apply), store=store) as s:
            aggregate = await s.aggregate("a")
    assert (reads.whole, reads.lean) == (0, 1)
    assert aggregate.state == Account(balance=3, history=(5, -2), closed=True)
    assert [(e.version, e.name, type(e.data).__name__) for e in seen] == [
        (1, "Deposited", "Deposited"),
        (2, "Withdrawn", "Withdrawn"),
        (3, "Closed", "Closed"),
    ]
    assert {(e.aggregate_name, e.aggregate_id, e.tenant) for e in seen} == {("account", "a", "")}
    assert {(e.id, e.timestamp, e.position) for e in seen} == {
        (UUID(int=0), datetime(1970, 1, 1, tzinfo=UTC), 0)
    }
    assert all(dict(e.metadata) == {} for e in seen)


async def test_whole_envelopes_unless_declared(make_store: StoreMaker) -> None:
    """The default config keeps reading whole events: the handler gets them as stored."""
    async with Signal(WHOLE, store=make_store()) as signal:
        await signal.create("a", Deposit(5))
    store = make_store()
    with counted(store) as reads:
        async with Signal(WHOLE, store=store) as signal:
            assert signal._lean is None
            assert (await signal.aggregate("a")).state.balance == 5
    assert (reads.whole, reads.lean) == (1, 0)


# Back to whole events: what a lean read cannot take.


class Reversed:
    """A transcoder: the bytes backwards."""

    def encode(self, data: bytes) -> bytes:
        return data[::-1]

    def decode(self, data: bytes) -> bytes:
        return data[::-1]


async def test_a_transcoder_keeps_whole_reads(make_store: StoreMaker) -> None:
    async with Signal(LEAN, store=make_store(), transcoder=Reversed()) as signal:
        await signal.create("a", Deposit(5))
        await signal.handle_command("a", Withdraw(1))
    store = make_store()
    with counted(store) as reads:
        async with Signal(LEAN, store=store, transcoder=Reversed()) as signal:
            assert signal._lean is None
            aggregate = await signal.aggregate("a")
    assert (aggregate.state, aggregate.version) == (Account(4, (5, -1)), 2)
    assert (reads.whole, reads.lean) == (1, 0)


async def test_rows_for_an_upcaster_rebuild_from_whole_events(make_store: StoreMaker) -> None:
    from test_evolution import NEW, ItemAdded, write_old_history

    lean = dataclasses.replace(NEW, rebuild_envelopes=False)
    await write_old_history(make_store())
    async with Signal(NEW, store=make_store()) as whole:
        expected = (await whole.aggregate("b")).state
    store = make_store()
    with counted(store) as reads:
        async with Signal(lean, store=store) as signal:
            assert signal._lean is not None  # current rows would be read lean
            basket = await signal.aggregate("b")
            assert basket.state == expected
            assert (reads.whole, reads.lean) == (1, 1)  # an old row: read again, whole
            await signal.create("fresh", [ItemAdded("jam", 450, 2)])
    with counted(store) as reads:
        async with Signal(lean, store=store) as signal:
            assert (await signal.aggregate("fresh")).state.items == {"jam": (450, 2)}
    assert (reads.whole, reads.lean) == (0, 1)


async def test_a_row_that_does_not_decode_is_named_as_before(make_store: StoreMaker) -> None:
    store = make_store()
    async with Signal(LEAN, store=store) as signal:
        await signal.create("a", Deposit(5))
        bad = StoredEvent(
            id=uuid4(),
            aggregate_name="account",
            aggregate_id="a",
            version=2,
            name="Deposited",
            timestamp=datetime.now(UTC),
            data=b'{"amount": "five"}',
        )
        await store.append("account", "a", 1, [bad])
    errors = []
    for cfg in (LEAN, WHOLE):
        async with Signal(cfg, store=make_store()) as signal:
            with pytest.raises(EventSerializationError) as failed:
                await signal.aggregate("a")
        errors.append((str(failed.value), failed.value.version))
    assert errors[0] == errors[1]
    assert errors[0][1] == 2


async def test_missing_and_archived_aggregates(make_store: StoreMaker) -> None:
    async with Signal(LEAN, store=make_store()) as signal:
        await signal.create("empty")
        await signal.create("old", Deposit(1))
        await signal.archive("old")
    async with Signal(LEAN, store=make_store()) as signal:
        assert (await signal.aggregate("empty")).version == 0
        with pytest.raises(AggregateNotFound):
            await signal.aggregate("nobody")
        with pytest.raises(AggregateArchived):
            await signal.aggregate("old")


async def test_a_truncated_stream_rebuilds_from_its_snapshot(make_store: StoreMaker) -> None:
    every4 = snapshotted(LEAN, 4)
    async with Signal(every4, store=make_store()) as signal:
        await signal.create("a")
        for amount in range(1, 11):
            await signal.handle_command("a", Deposit(amount))
        await signal.drain()
        before = (await signal.aggregate("a")).state
        await signal.truncate_before("a", 9)
    async with Signal(every4, store=make_store()) as signal:
        assert (await signal.aggregate("a")).state == before
    async with Signal(LEAN, store=make_store()) as signal:  # no snapshots: the history is gone
        with pytest.raises(HistoryTruncated):
            await signal.aggregate("a")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_a_tenant_view_rebuilds_lean_within_its_tenant(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: EventStore
    if kind == "memory":
        store = MemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "tenants.db", migrate=True)
    else:
        from eventsignal.stores.postgres import PostgresStore

        store = PostgresStore(request.getfixturevalue("postgres_dsn"), migrate=True, max_size=2)
    async with Signal(LEAN, store=store) as signal:
        await signal.for_tenant("acme").create("a", Deposit(7))
        await signal.for_tenant("globex").create("a", Deposit(3))
        await signal.create("a", Deposit(1))
    seen: list[Event[Any]] = []

    def apply(account: Account, event: Event[Any]) -> Account:
        seen.append(event)
        return WHOLE.event_handler(account, event)

    with counted(store) as reads:
        async with Signal(config(event_handler=apply, rebuild_envelopes=False), store=store) as s:
            acme = await s.for_tenant("acme").aggregate("a")
            globex = await s.for_tenant("globex").aggregate("a")
            default = await s.aggregate("a")
    assert [a.state.balance for a in (acme, globex, default)] == [7, 3, 1]
    assert [e.tenant for e in seen] == ["acme", "globex", ""]
    assert (reads.whole, reads.lean) == (0, 3)


# Long histories: several chunks, and folds that yield to the event loop.


def _deposits(first: int, count: int, aggregate_id: str = "long") -> list[StoredEvent]:
    now = datetime.now(UTC)
    return [
        StoredEvent(
            id=uuid4(),
            aggregate_name="account",
            aggregate_id=aggregate_id,
            version=version,
            name="Deposited",
            timestamp=now,
            data=b'{"amount":%d}' % (version % 7 + 1),
        )
        for version in range(first, first + count)
    ]


async def test_a_long_history_rebuilds_lean_as_it_does_whole(make_store: StoreMaker) -> None:
    store = make_store()
    async with Signal(WHOLE, store=store) as signal:
        await signal.create("long")
        for first in range(1, 4501, 1500):
            await store.append("account", "long", first - 1, _deposits(first, 1500))
    async with Signal(WHOLE, store=make_store()) as signal:
        whole = await signal.aggregate("long")
        expected = (whole.state, whole.version)
    after_history = dataclasses.replace(
        LEAN, snapshots=SnapshotPolicy(every=None, when=lambda state, version: version > 4500)
    )
    store = make_store()
    with counted(store) as reads:
        async with Signal(after_history, store=store) as signal:
            lean = await signal.aggregate("long")
            assert (lean.state, lean.version) == expected == (expected[0], 4500)
            await signal.handle_command("long", Deposit(1))
            await signal.drain()  # a snapshot at 4501
    assert (reads.whole, reads.lean) == (0, 1)
    async with Signal(after_history, store=make_store()) as signal:
        again = await signal.aggregate("long")
        assert signal.pool_stats.snapshot_hits == 1
        assert again.state.balance == expected[0].balance + 1


async def test_a_late_row_for_the_general_path_leaves_the_store_usable(
    make_store: StoreMaker,
) -> None:
    """The lean fold stops at a row it cannot take, deep in the history; the rebuild reads whole
    events and names the row, and the store goes on serving (its connections are clean)."""
    store = make_store()
    async with Signal(WHOLE, store=store) as signal:
        await signal.create("long")
        await store.append("account", "long", 0, _deposits(1, 2500))
        bad = _deposits(2501, 1)[0]
        await store.append("account", "long", 2500, [msgspec.structs.replace(bad, data=b"{")])
        await store.append("account", "long", 2501, _deposits(2502, 500))
        await signal.create("short", Deposit(3))
    store = make_store()
    async with Signal(LEAN, store=store) as signal:
        for _ in range(5):  # more than the pool's connections
            with pytest.raises(EventSerializationError) as failed:
                await signal.aggregate("long")
            assert failed.value.version == 2501
        assert (await signal.aggregate("short")).state.balance == 3
        assert len(await store.read_aggregate("account", "long", 2990)) == 11


async def test_a_cancelled_rebuild_leaves_the_store_usable(make_store: StoreMaker) -> None:
    store = make_store()
    async with Signal(WHOLE, store=store) as signal:
        await signal.create("long")
        await store.append("account", "long", 0, _deposits(1, 3000))
    store = make_store()
    async with Signal(LEAN, store=store) as signal:
        for delay in (0, 0.001, 0.003):
            rebuild = asyncio.ensure_future(signal.aggregate("long"))
            await asyncio.sleep(delay)
            rebuild.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rebuild
        assert (await signal.aggregate("long")).version == 3000


async def test_postgres_prepares_its_read_again_when_the_server_forgot_it(
    postgres_dsn: str,
) -> None:
    from eventsignal.stores.postgres import PostgresStore

    async with PostgresStore(postgres_dsn, migrate=True, max_size=1) as store:  # one connection
        async with Signal(LEAN, store=store) as signal:
            await signal.create("a", Deposit(4))
        for _ in range(2):
            async with Signal(LEAN, store=store) as signal:
                assert (await signal.aggregate("a")).state.balance == 4
            async with store.transaction() as tx:
                await tx.execute("DEALLOCATE ALL")


class PlainStore:
    """The event store contract alone, over a memory store: no lean reads."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
    ) -> Sequence[int]:
        return await self.inner.create(aggregate_name, aggregate_id, events, created_at=created_at)

    async def exists(self, aggregate_name: str, aggregate_id: str) -> bool:
        return await self.inner.exists(aggregate_name, aggregate_id)

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]:
        return await self.inner.append(aggregate_name, aggregate_id, expected_version, events)

    async def read_aggregate(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> Sequence[StoredEvent]:
        return await self.inner.read_aggregate(aggregate_name, aggregate_id, after_version)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> Sequence[StoredEvent]:
        return await self.inner.read_all(after_position, limit)

    async def head_position(self) -> int:
        return await self.inner.head_position()

    async def aggregates(self, aggregate_name: str | None = None) -> Sequence[Any]:
        return await self.inner.aggregates(aggregate_name)

    async def wait_for_events(self, after_position: int) -> None:
        await self.inner.wait_for_events(after_position)


async def test_a_store_without_lean_reads_rebuilds_from_whole_events() -> None:
    store = PlainStore(MemoryStore())
    assert not isinstance(store, FoldReads)
    async with Signal(LEAN, store=store) as signal:
        await signal.create("a", Deposit(5))
        await signal.handle_command("a", Withdraw(2))
    async with Signal(LEAN, store=store) as signal:
        assert signal._lean is None
        aggregate = await signal.aggregate("a")
    assert (aggregate.state, aggregate.version) == (Account(3, (5, -2)), 2)


async def test_postgres_without_chunks_reads_whole_answers(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before libpq 17 the rows come in one answer: the same rows, the same states."""
    from eventsignal.stores.postgres import PostgresStore, store

    monkeypatch.setattr(store, "CHUNKED", False)
    async with PostgresStore(postgres_dsn, migrate=True, max_size=2) as pg:
        async with Signal(LEAN, store=pg) as signal:
            await signal.create("a")
            await pg.append("account", "a", 0, _deposits(1, 2500, "a"))
            await signal.for_tenant("acme").create("a", Deposit(2))
        with counted(pg) as reads:
            async with Signal(LEAN, store=pg) as signal:
                assert (await signal.aggregate("a")).version == 2500
                assert (await signal.for_tenant("acme").aggregate("a")).state.balance == 2
                with pytest.raises(AggregateNotFound):
                    await signal.aggregate("b")
        assert reads.whole == 0
        assert [len(rows) async for rows in pg.read_aggregate_data("account", "a", 2400)] == [100]
        assert [rows async for rows in pg.read_aggregate_data("account", "a", 2500)] == []


async def test_personal_fields_keep_whole_reads() -> None:
    """Personal values live sealed beside the event: rebuilds read whole events to open them,
    and a forgotten subject reads back redacted, as without the declaration."""
    from test_privacy import ChangePlan, Customer, Register, StructRegistered, customer_config

    from eventsignal.privacy import Privacy

    lean = dataclasses.replace(customer_config(StructRegistered), rebuild_envelopes=False)
    store = MemoryStore()
    privacy = Privacy()
    async with Signal(lean, store=store, privacy=privacy) as signal:
        await signal.create("c1", Register("alice", "alice@example.org", "Alice"))
        await signal.handle_command("c1", ChangePlan("pro"))
        await signal.create("c2", Register("bob", "bob@example.org", None))
        await signal.drain()
        await signal.forget("alice")
    with counted(store) as reads:
        async with Signal(lean, store=store, privacy=privacy) as signal:
            assert signal._lean is None
            assert (await signal.aggregate("c1")).state == Customer("", None, "pro")
            bob = await signal.aggregate("c2")
            assert bob.state == Customer("bob@example.org", None, "basic")
    assert reads.lean == 0
