"""Subscription declarations, partitioning, the fair-share plan, and checkpoints kept elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from subscription_worker import (
    carts,
    expected_from_events,
    project,
    revenue_projection,
    write_carts,
)

from eventsignal import Event, Signal
from eventsignal.cart import CartPaid, cart_config
from eventsignal.stores import MemoryStore, SQLiteStore
from eventsignal.stores.subscription_state import Lease
from eventsignal.subscriptions import (
    ReadModel,
    Subscription,
    SubscriptionRunner,
    Transaction,
    parked_events,
    partition_of,
    subscription_status,
    wait_until_processed,
)
from eventsignal.subscriptions.partitions import plan


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="no config to decode"):
        Subscription(name="s", handler=print, configs=[cart_config], aggregate_names={"order"})
    with pytest.raises(ValueError, match="reads no aggregate type"):
        Subscription(name="s", handler=print)
    with pytest.raises(ValueError, match="on_failure"):
        Subscription(name="s", handler=print, configs=[cart_config], on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        Subscription(name="s", handler=print, configs=[cart_config], partitions=0)


def test_handlers_taking_a_transaction_are_recognised() -> None:
    def plain(event: Event[Any]) -> None: ...

    async def with_tx(event: Event[Any], tx: Transaction) -> None: ...

    def with_default(event: Event[Any], extra: int = 1) -> None: ...

    def make(handler: Any, **options: Any) -> Subscription:
        return Subscription(name="s", handler=handler, configs=[cart_config], **options)

    assert not make(plain).takes_transaction
    assert make(with_tx).takes_transaction
    assert not make(with_default).takes_transaction
    assert not make(print).takes_transaction
    assert not make(with_tx, transactional=False).takes_transaction


def test_partitions_are_stable_and_spread() -> None:
    # Fixed values: every process and every release must agree on them (CRC-32, not hash()).
    assert [partition_of("cart", f"cart-{i}", 8) for i in range(6)] == [3, 5, 7, 1, 2, 4]
    assert partition_of("cart", "anything", 1) == 0
    counts = [0] * 4
    for n in range(4000):
        counts[partition_of("cart", f"cart-{n}", 4)] += 1
    assert min(counts) > 800


def test_the_plan_gives_each_member_its_fair_share() -> None:
    now = 100.0
    free = [Lease(p, 0, None, 0.0) for p in range(8)]
    alone = plan(free, ["a"], "a", now)
    assert sorted(alone.claim) == list(range(8))
    assert alone.release == ()

    all_mine = [Lease(p, 0, "a", now + 5) for p in range(8)]
    assert len(plan(all_mine, ["a", "b"], "a", now).release) == 4
    assert plan(all_mine, ["a", "b"], "b", now).claim == ()  # nothing free until "a" gives back

    half = [Lease(p, 0, "a" if p < 4 else None, now + 5 if p < 4 else 0.0) for p in range(8)]
    assert sorted(plan(half, ["a", "b"], "b", now).claim) == [4, 5, 6, 7]

    expired = [Lease(p, 0, "dead", now - 1) for p in range(3)]
    assert sorted(plan(expired, ["b"], "b", now).claim) == [0, 1, 2]


async def test_checkpoints_can_live_in_another_store(tmp_path: Path) -> None:
    """Events in a store without SQL (here memory, in production NATS), state in SQLite."""
    from eventsignal.stores import SQLiteStore

    events = MemoryStore()
    state = SQLiteStore(tmp_path / "state.db", migrate=True)
    async with Signal(cart_config, store=events, telemetry=None) as signal:
        await write_carts(signal, [f"cart-{i}" for i in range(5)])
    async with SubscriptionRunner(revenue_projection(), events, checkpoints=state):
        # The runner opened the checkpoint store too, and closes it when it stops.
        head = await events.head_position()
        await wait_until_processed(events, "revenue", head, checkpoints=state)
    await state.open()
    try:
        [status] = await subscription_status(events, checkpoints=state)
        assert status.position == head
        totals: ReadModel[dict[str, int]] = ReadModel("carts", dict[str, int])
        documents = await totals.read_all(events, checkpoints=state)
        revenue, _ = await expected_from_events(events)
        assert sum(d.value["paid"] for d in documents) == revenue
    finally:
        await state.close()


async def test_a_transactional_handler_parks_atomically() -> None:
    store = MemoryStore()
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await write_carts(signal, [f"cart-{i}" for i in range(4)])
    broken = {"on": True}

    async def handler(event: Event[Any], tx: Transaction) -> None:
        await project(event, tx)  # written, then rolled back when the event fails
        if broken["on"] and event.aggregate_id == "cart-2" and isinstance(event.data, CartPaid):
            raise RuntimeError("cannot book it")

    projection = revenue_projection(handler=handler, max_attempts=2, retry_delay=0)
    async with SubscriptionRunner(projection, store) as runner:
        head = await store.head_position()
        await wait_until_processed(store, "revenue", head)
        [parked] = await parked_events(store, "revenue")
        totals: ReadModel[dict[str, int]] = ReadModel("carts", dict[str, int])
        cart2 = await totals.read(store, "cart-2")
        assert cart2 is not None
        assert cart2["paid"] == 0  # the failed event left nothing behind
        broken["on"] = False
        assert await runner.retry_parked() == []
        assert await runner.parked() == []
        cart2 = await totals.read(store, "cart-2")
        assert cart2 is not None
        assert cart2["paid"] > 0
        assert parked.aggregate_id == "cart-2"


async def test_staged_documents_are_visible_inside_the_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db", migrate=True)  # the handler runs its own SQL
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await write_carts(signal, ["a", "b"])
    notes: ReadModel[dict[str, int]] = ReadModel("notes", dict[str, int])
    seen: list[tuple[Any, ...]] = []

    async def handler(event: Event[Any], tx: Transaction) -> None:
        await notes.put(tx, event.aggregate_id, {"v": event.version}, event.position)
        assert await notes.get(tx, event.aggregate_id) == {"v": event.version}
        if event.aggregate_id == "b":
            await notes.delete(tx, "a")
            assert await notes.get(tx, "a") is None
        # The handler's own SQL sees the staged writes too.
        row = await tx.fetchone("SELECT COUNT(*) FROM eventsignal_documents WHERE model = 'notes'")
        assert row is not None
        seen.append((event.aggregate_id, row[0]))

    subscription = Subscription(
        name="notes", handler=handler, configs=[cart_config], read_models=[notes]
    )
    async with SubscriptionRunner(subscription, store):
        await wait_until_processed(store, "notes", await store.head_position())
        assert [d.key for d in await notes.read_all(store)] == ["b"]
    assert seen[0] == ("a", 1)
    assert seen[-1] == ("b", 1)


@pytest.mark.postgres
async def test_a_member_that_lost_its_lease_mid_batch_rolls_back(postgres_dsn: str) -> None:
    """The fence itself: the checkpoint compare-and-set fails, so the batch's writes vanish."""
    from eventsignal.stores import PostgresStore

    store = PostgresStore(postgres_dsn, migrate=True, max_size=4)
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await write_carts(signal, ["a"])
    inside = asyncio.Event()
    gate = asyncio.Event()

    async def handler(event: Event[Any], tx: Transaction) -> None:
        await project(event, tx)
        inside.set()
        await gate.wait()

    runner = SubscriptionRunner(revenue_projection(handler=handler), store, member="late")
    await runner.start()
    try:
        await inside.wait()
        # The lease "expired" and another member took it.
        async with store.subscription_transaction() as state:
            assert await state.claim("revenue", 0, "thief", now=1e12, until=1e12) == 0
        gate.set()
        async with asyncio.timeout(5):  # its commit fails and it lets the partition go
            while True:
                if not runner.partitions:
                    break
                await asyncio.sleep(0.01)
        assert await carts.read_all(store) == []  # the late batch left nothing behind
        async with store.subscription_reads() as state:
            [lease] = await state.leases("revenue")
        assert (lease.owner, lease.position) == ("thief", 0)
    finally:
        await runner.stop()
