"""Stream lifecycle through the Signal: archive, restore, delete, truncate, on every store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from accounts import Account, Deposit, Withdraw, config
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsignal import AggregateExists, Event, Signal
from eventsignal.domain.errors import (
    AggregateArchived,
    AggregateDeleted,
    HistoryTruncated,
    LifecycleNotSupported,
    NoUsableSnapshot,
)
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.stores.lifecycle import DELETION_EVENT, StreamDeleted, lifecycle_of
from eventsignal.subscriptions import (
    Subscription,
    SubscriptionRunner,
    parked_events,
    wait_until_processed,
)

MakeStore = Callable[[], Awaitable[EventStore]]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A factory of unopened stores on one database (the memory store is a single object)."""
    kind = request.param
    if kind == "memory":
        memory = MemoryStore()

        async def same() -> EventStore:
            return memory

        return same
    if kind == "sqlite":
        from eventsignal.stores import SQLiteStore

        async def sqlite() -> EventStore:
            return SQLiteStore(tmp_path / "events.db", migrate=True)

        return sqlite
    factory = request.getfixturevalue("postgres_store_factory")

    async def postgres() -> EventStore:
        store: EventStore = await factory()
        return store

    return postgres


def snapshotted(every: int = 3) -> Any:
    return dataclasses.replace(config(), snapshots=SnapshotPolicy(every=every))


async def test_archive_and_restore_round_trip(make_store: MakeStore) -> None:
    async with Signal(config(), store=await make_store()) as signal:
        for name in ("a", "b"):
            await signal.create(name)
        for amount in range(1, 6):
            await signal.handle_command("a", Deposit(amount))
            await signal.handle_command("b", Deposit(10 * amount))
        history = [(e.id, e.position, e.version, e.data) for e in await signal.events("a")]
        state = (await signal.aggregate("a")).state

        result = await signal.archive("a")
        assert result.events == 5
        assert "a" not in [e.aggregate_id for e in await signal.store.read_all(0, 100)]
        with pytest.raises(AggregateArchived, match="account 'a' is archived"):
            await signal.handle_command("a", Deposit(1))
        with pytest.raises(AggregateArchived):
            await signal.events("a")
        with pytest.raises(AggregateArchived):
            await signal.aggregate("a")
        assert (await signal.stream_status("a")).state == "archived"
        await signal.handle_command("b", Deposit(1))  # the others carry on

        assert (await signal.restore("a")).events == 5
        assert [(e.id, e.position, e.version, e.data) for e in await signal.events("a")] == (
            history
        )
        assert (await signal.aggregate("a")).state == state
        assert await signal.handle_command("a", Withdraw(1)) == dataclasses.replace(
            state, balance=state.balance - 1, history=(*state.history, -1)
        )


async def test_another_process_finds_out_at_its_next_command(make_store: MakeStore) -> None:
    async with (
        Signal(config(), store=await make_store()) as ours,
        Signal(config(), store=await make_store()) as theirs,
    ):
        await ours.create("a")
        await ours.handle_command("a", Deposit(5))
        await theirs.handle_command("a", Deposit(5))  # now live in their pool too
        await ours.handle_command("a", Deposit(1))
        await ours.archive("a")
        assert ours.pool_size == 0
        with pytest.raises(AggregateArchived):
            await theirs.handle_command("a", Deposit(1))
        assert theirs.pool_size == 0  # the stale copy left their pool
        await ours.restore("a")
        assert (await theirs.handle_command("a", Deposit(1))).balance == 12

        await ours.delete("a")
        with pytest.raises(AggregateDeleted, match="can never be used again"):
            await theirs.handle_command("a", Deposit(1))
        with pytest.raises(AggregateExists):
            await theirs.create("a")


async def test_delete_refuses_a_recreate_and_keeps_the_others(make_store: MakeStore) -> None:
    async with Signal(config(), store=await make_store()) as signal:
        await signal.create("a", Deposit(3))
        await signal.create("b", Deposit(4))
        result = await signal.delete("a")
        assert result.events == 1
        with pytest.raises(AggregateExists):
            await signal.create("a")
        with pytest.raises(AggregateDeleted):
            await signal.handle_command("a", Deposit(1))
        with pytest.raises(AggregateDeleted):
            await signal.state_at("a", version=1)
        assert [i.aggregate_id for i in await signal.store.aggregates()] == ["b"]
        assert (await signal.aggregate("b")).state.balance == 4


async def test_a_durable_subscription_across_archive_and_delete(make_store: MakeStore) -> None:
    """The runner follows live while streams are archived and deleted: it neither fails nor
    misses a live event, and receives the deletion record in its place in the log."""
    store = await make_store()
    seen: list[tuple[str, int, str]] = []
    deleted: list[StreamDeleted] = []

    def handler(event: Event[Any]) -> None:
        if isinstance(event.data, StreamDeleted):
            deleted.append(event.data)
        seen.append((event.aggregate_id, event.version, event.name))

    subscription = Subscription(
        name="ledger", handler=handler, configs=[config()], poll_interval=0.05, max_attempts=1
    )
    async with Signal(config(), store=store) as signal:
        for name in ("a", "b", "c"):
            await signal.create(name, Deposit(1))
        async with SubscriptionRunner(subscription, store):
            await wait_until_processed(store, "ledger", await store.head_position(), timeout=5)
            await signal.handle_command("a", Deposit(2))
            await signal.archive("b")  # passed already: the subscription is not disturbed
            writers = [signal.handle_command("c", Deposit(n)) for n in range(1, 6)]
            await asyncio.gather(*writers, signal.delete("a"))
            await signal.handle_command("c", Deposit(9))
            await wait_until_processed(store, "ledger", await store.head_position(), timeout=5)
            assert await parked_events(store, "ledger") == []
    live = [(i, v) for i, v, n in seen if n != "eventsignal.StreamDeleted"]
    # Every live event of c, in order; a's and b's from before, delivered once.
    assert [v for i, v in live if i == "c"] == [1, 2, 3, 4, 5, 6, 7]
    assert [v for i, v in live if i == "a"] == [1, 2]
    assert [v for i, v in live if i == "b"] == [1]
    assert [(d.aggregate_id, d.version, d.events) for d in deleted] == [("a", 2, 2)]


async def test_a_subscription_behind_an_archive_skips_it_and_sees_a_restore(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    seen: list[tuple[str, int]] = []
    subscription = Subscription(
        name="late", handler=lambda e: seen.append((e.aggregate_id, e.version)), configs=[config()]
    )
    async with Signal(config(), store=store) as signal:
        await signal.create("a", Deposit(1))
        await signal.create("b", Deposit(1))
        await signal.archive("a")
        async with SubscriptionRunner(subscription, store):
            await wait_until_processed(store, "late", await store.head_position(), timeout=5)
        assert seen == [("b", 1)]  # archived: skipped, cleanly
        await signal.restore("a")
        seen.clear()
        fresh = Subscription(
            name="later",
            handler=lambda e: seen.append((e.aggregate_id, e.version)),
            configs=[config()],
        )
        async with SubscriptionRunner(fresh, store):  # restored before it got there: seen
            await wait_until_processed(store, "later", await store.head_position(), timeout=5)
        assert seen == [("a", 1), ("b", 1)]


async def test_truncate_keeps_the_state(make_store: MakeStore) -> None:
    async with Signal(snapshotted(every=4), store=await make_store()) as signal:
        await signal.create("a")
        for amount in range(1, 11):
            await signal.handle_command("a", Deposit(amount))
        await signal.drain()  # the snapshot at version 8 is stored
        before = (await signal.aggregate("a")).state
        at_nine = (await signal.state_at("a", version=9)).state

        with pytest.raises(NoUsableSnapshot, match="snapshot is at version 8"):
            await signal.truncate_before("a", 10)
        result = await signal.truncate_before("a", 9)
        assert result.events == 8
        assert (await signal.stream_status("a")).first_version == 9
        assert (await signal.aggregate("a")).state == before  # rebuilt: snapshot and tail
        assert (await signal.state_at("a", version=9)).state == at_nine
        with pytest.raises(HistoryTruncated) as truncated:
            await signal.state_at("a", version=5)
        assert (truncated.value.version, truncated.value.first_kept) == (5, 9)
        assert "account 'a'" in str(truncated.value)
        assert [e.version for e in await signal.events("a")] == [9, 10]
        now = datetime.now(UTC)
        assert (await signal.state_at("a", timestamp=now)).state == before
        with pytest.raises(HistoryTruncated):
            await signal.state_at("a", timestamp=now - timedelta(days=1))
        assert (await signal.handle_command("a", Deposit(1))).balance == before.balance + 1


async def test_truncate_without_snapshots_is_refused() -> None:
    async with Signal(config(), store=MemoryStore()) as signal:
        await signal.create("a", Deposit(1))
        await signal.handle_command("a", Deposit(1))
        with pytest.raises(NoUsableSnapshot, match="without snapshots"):
            await signal.truncate_before("a", 2)


async def test_a_rebuild_that_lost_its_snapshot_says_so() -> None:
    store = MemoryStore()
    async with Signal(snapshotted(every=2), store=store) as signal:
        await signal.create("a", Deposit(1))
        await signal.handle_command("a", Deposit(1))
        await signal.handle_command("a", Deposit(1))
        await signal.drain()
        await signal.truncate_before("a", 3)
    newer = dataclasses.replace(config(), snapshots=SnapshotPolicy(every=2, schema_version=2))
    async with Signal(newer, store=store) as signal:
        with pytest.raises(HistoryTruncated, match="before version 3 were truncated"):
            await signal.aggregate("a")


def test_a_store_without_lifecycle_names_itself_and_the_operation() -> None:
    from eventsignal.stores.nats import NatsStore

    with pytest.raises(LifecycleNotSupported, match="NatsStore does not support archive"):
        lifecycle_of(NatsStore("nats://127.0.0.1:1"), "archive")


async def test_account_config_is_unchanged_by_lifecycle() -> None:
    # The deletion record is known to every serializer, not declared as a user event.
    async with Signal(config(), store=MemoryStore()) as signal:
        assert Account() == signal.config.initial_state
        assert "eventsignal.StreamDeleted" not in signal.config.event_types


async def test_a_filtered_subscription_sees_the_deletion_record_when_it_names_it() -> None:
    store = MemoryStore()
    seen: dict[str, list[str]] = {"plain": [], "named": []}

    def recorder(key: str) -> Callable[[Event[Any]], None]:
        return lambda e: seen[key].append(f"{e.aggregate_id}:{e.name}")

    plain = Subscription(
        name="plain", handler=recorder("plain"), configs=[config()], event_names=["Deposited"]
    )
    named = Subscription(
        name="named",
        handler=recorder("named"),
        configs=[config()],
        event_names=["Deposited", DELETION_EVENT],
    )
    async with (
        Signal(config(), store=store) as signal,
        SubscriptionRunner(plain, store),
        SubscriptionRunner(named, store),
    ):
        await signal.create("a", Deposit(1))
        await signal.handle_command("a", Withdraw(1))
        for name in ("plain", "named"):
            await wait_until_processed(store, name, await store.head_position(), timeout=5)
        await signal.delete("a")
        for name in ("plain", "named"):
            await wait_until_processed(store, name, await store.head_position(), timeout=5)
    # A filter keeps its promise: only the names it lists, the deletion record included.
    assert seen["plain"] == ["a:Deposited"]
    assert seen["named"] == ["a:Deposited", "a:eventsignal.StreamDeleted"]


@settings(max_examples=40, deadline=None)
@given(
    amounts=st.lists(st.integers(min_value=1, max_value=50), min_size=2, max_size=30),
    every=st.integers(min_value=1, max_value=8),
    cut=st.integers(min_value=0, max_value=100),
)
def test_truncation_never_changes_a_state_it_can_still_give(
    amounts: list[int], every: int, cut: int
) -> None:
    """Derived two ways: every state before the truncation (each version, from the full log)
    against the same states after it, rebuilt by a fresh Signal from snapshot and tail."""

    every = min(every, len(amounts))  # at least one snapshot

    async def scenario() -> None:
        store = MemoryStore()
        async with Signal(snapshotted(every=every), store=store) as signal:
            await signal.create("a")
            for amount in amounts:
                await signal.handle_command("a", Deposit(amount))
            await signal.drain()
            states = [
                (await signal.state_at("a", version=v)).state for v in range(len(amounts) + 1)
            ]
            snapshot = await store.load_snapshot("account", "a")
            assert snapshot is not None
            version = 1 + cut % min(snapshot.version + 1, len(amounts))  # keeps the last event
            await signal.truncate_before("a", version)
        async with Signal(snapshotted(every=every), store=store) as fresh:
            assert (await fresh.aggregate("a")).state == states[-1]
            for v, state in enumerate(states):
                if v >= snapshot.version or version == 1:
                    assert (await fresh.state_at("a", version=v)).state == state
                else:
                    with pytest.raises(HistoryTruncated):
                        await fresh.state_at("a", version=v)

    asyncio.run(scenario())


async def test_copy_refuses_a_store_whose_streams_changed(make_store: MakeStore) -> None:
    from eventsignal.copying import CopyRefused, copy_store

    source = await make_store()
    async with Signal(config(), store=source) as signal:
        await signal.create("a", Deposit(1))
        await signal.create("b", Deposit(1))
        await signal.delete("a")
        target = MemoryStore()
        await source.open()
        try:
            with pytest.raises(CopyRefused, match="archived, deleted or truncated"):
                await copy_store(source, target)
        finally:
            await source.close()


def test_the_blocking_facade_archives_and_restores() -> None:
    from eventsignal import sync

    with sync.Signal(config(), store=MemoryStore()) as signal:
        signal.create("a", Deposit(2))
        assert signal.archive("a").events == 1
        assert signal.stream_status("a").state == "archived"
        with pytest.raises(AggregateArchived):
            signal.handle_command("a", Deposit(1))
        assert signal.restore("a").events == 1
        assert signal.handle_command("a", Deposit(1)).balance == 3


async def test_an_archive_racing_commands_loses_none_of_them(make_store: MakeStore) -> None:
    """Commands in flight while the aggregate is archived either landed before it (and come
    back with the restore) or were refused; none is half stored, none lost."""
    async with (
        Signal(config(), store=await make_store()) as ours,
        Signal(config(), store=await make_store()) as theirs,
    ):
        await ours.create("a", Deposit(1))
        await theirs.aggregate("a")  # in their pool: their commands go straight to the store

        async def deposit(amount: int) -> int | None:
            try:
                await theirs.handle_command("a", Deposit(amount))
            except AggregateArchived:
                return None
            return amount

        async def archive() -> None:
            await ours.archive("a")

        # The archive is sent in the middle of the commands.
        outcomes = await asyncio.gather(
            *(deposit(n) for n in range(2, 12)), archive(), *(deposit(n) for n in range(12, 22))
        )
        landed = [n for n in outcomes if n is not None]
        await ours.restore("a")
        events = await ours.events("a")
        assert sorted(e.data.amount for e in events[1:]) == sorted(landed)
        assert [e.version for e in events] == list(range(1, len(landed) + 2))
        positions = [e.position for e in events]
        assert positions == sorted(positions)
