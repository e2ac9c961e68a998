"""Durable subscriptions on every store: catch-up, restarts, failures, leases, read-your-writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from subscription_worker import (
    expected_from_events,
    project,
    projected,
    revenue_projection,
    write_carts,
)

from eventsignal import Event, Signal
from eventsignal.cart import CartPaid, ProductAdded, cart_config
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.subscriptions import (
    Subscription,
    SubscriptionRunner,
    SubscriptionStopped,
    SubscriptionTimeout,
    Transaction,
    parked_events,
    subscription_status,
    wait_until_processed,
)

MakeStore = Callable[[], Awaitable[EventStore]]


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
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
    if kind == "nats":
        from eventsignal.stores import NatsStore

        url, stream = request.getfixturevalue("nats_url"), f"test_{uuid4().hex}"

        async def nats() -> EventStore:
            return NatsStore(url, stream=stream)

        return nats
    factory = request.getfixturevalue("postgres_store_factory")

    async def postgres() -> EventStore:
        store: EventStore = await factory()
        return store

    return postgres


async def filled(make_store: MakeStore, carts_count: int, seed: int = 1) -> EventStore:
    store = await make_store()
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await write_carts(signal, [f"cart-{i}" for i in range(carts_count)], seed)
    return store


async def positions(store: EventStore) -> list[int]:
    """Every stored event's position (not always 1..n: NATS leaves gaps)."""
    return [e.position for e in await store.read_all(0, 100_000)]


async def assert_projection_matches(store: EventStore) -> None:
    await store.open()
    try:
        revenue, versions = await expected_from_events(store)
        got_revenue, got_versions, anomalies = await projected(store)
    finally:
        await store.close()
    assert anomalies == 0
    assert got_versions == versions
    assert got_revenue == revenue
    assert revenue > 0


async def test_restart_in_the_middle_of_catch_up(make_store: MakeStore) -> None:
    store = await filled(make_store, 60)
    handled = {"events": 0}
    some_done = asyncio.Event()

    async def counting(event: Event[Any], tx: Transaction) -> None:
        await project(event, tx)
        handled["events"] += 1
        if handled["events"] == 40:
            some_done.set()

    subscription = revenue_projection(handler=counting, batch_size=10)
    first = SubscriptionRunner(subscription, store)
    await first.start()
    await some_done.wait()
    await first.stop()
    await store.open()
    head = await store.head_position()
    count = len(await positions(store))
    assert 0 < first.delivered < count  # really stopped half way

    second = SubscriptionRunner(subscription, await make_store())
    async with second:
        await wait_until_processed(second.store, "revenue", head, timeout=10)
    assert first.delivered + second.delivered == count  # nothing delivered twice
    await store.close()
    await assert_projection_matches(store)


async def test_transient_failures_are_retried(make_store: MakeStore) -> None:
    store = await filled(make_store, 20)
    failures = {"left": 5}

    async def flaky(event: Event[Any], tx: Transaction) -> None:
        if isinstance(event.data, CartPaid) and failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("the mail server is down")
        await project(event, tx)

    subscription = revenue_projection(handler=flaky, batch_size=25, retry_delay=0.001)
    async with SubscriptionRunner(subscription, store) as runner:
        await wait_until_processed(store, "revenue", await store.head_position(), timeout=10)
        assert await parked_events(store, "revenue") == []
    assert failures["left"] == 0
    assert runner.error is None
    await assert_projection_matches(store)


async def test_follows_live_appends(make_store: MakeStore) -> None:
    store = await make_store()
    async with (
        SubscriptionRunner(revenue_projection(), store),
        Signal(cart_config, store=await make_store(), telemetry=None) as signal,
    ):
        await write_carts(signal, ["a", "b", "c"])
        head = await store.head_position()
        await wait_until_processed(store, "revenue", head, timeout=5)
        revenue, _, _ = await projected(store)
        assert revenue == (await expected_from_events(store))[0]
        await write_carts(signal, ["d"])
        await wait_until_processed(store, "revenue", await store.head_position(), timeout=5)
    await assert_projection_matches(store)


async def test_status_from_the_store_alone(make_store: MakeStore) -> None:
    store = await filled(make_store, 5)
    async with SubscriptionRunner(revenue_projection(partitions=3), store):
        head = await store.head_position()
        await wait_until_processed(store, "revenue", head, timeout=5)
        [status] = await subscription_status(store)
        assert (status.name, status.position, status.head, status.lag) == ("revenue", head, head, 0)
        assert (status.partitions, status.leased, status.parked) == (3, 3, 0)
    await store.open()
    [status] = await subscription_status(store)
    assert status.leased == 0  # stopping hands the partitions back
    await store.close()


async def test_parked_events_can_be_listed_and_retried(make_store: MakeStore) -> None:
    store = await filled(make_store, 4)
    broken = {"on": True}
    seen: list[int] = []

    def handler(event: Event[Any]) -> None:
        if broken["on"] and event.aggregate_id == "cart-2":
            raise ValueError("cart-2 is cursed")
        seen.append(event.position)

    subscription = Subscription(
        name="fragile", handler=handler, configs=[cart_config], max_attempts=2, retry_delay=0
    )
    async with SubscriptionRunner(subscription, store) as runner:
        head = await store.head_position()
        await wait_until_processed(store, "fragile", head, timeout=5)
        parked = await parked_events(store, "fragile")
        cursed = [r.position for r in await store.read_all(0, 1000) if r.aggregate_id == "cart-2"]
        assert [p.position for p in parked] == cursed
        assert parked[0].attempts == 2
        assert "ValueError: cart-2 is cursed" in parked[0].error
        everything = await positions(store)
        assert sorted(seen) == [p for p in everything if p not in cursed]
        [status] = await subscription_status(store)
        assert status.parked == len(cursed)

        assert len(await runner.retry_parked()) == len(cursed)  # still failing: kept
        broken["on"] = False
        assert await runner.retry_parked() == []
        assert await runner.parked() == []
        assert sorted(seen) == everything


async def test_stop_policy_stops_before_the_failing_event(make_store: MakeStore) -> None:
    store = await filled(make_store, 3)
    broken = {"on": True}
    seen: list[int] = []

    def handler(event: Event[Any]) -> None:
        if broken["on"] and event.aggregate_id == "cart-1":
            raise ValueError("no")
        seen.append(event.position)

    subscription = Subscription(
        name="strict",
        handler=handler,
        configs=[cart_config],
        max_attempts=1,
        on_failure="stop",
    )
    runner = SubscriptionRunner(subscription, store)
    await runner.start()
    with pytest.raises(SubscriptionStopped) as stopped:
        await runner.wait()
    first_bad = stopped.value.position
    assert max(seen) < first_bad
    await runner.stop()
    await store.open()
    assert [p.position for p in await parked_events(store, "strict")] == [first_bad]

    broken["on"] = False  # fixed; a restart delivers the event and forgets it was parked
    async with SubscriptionRunner(subscription, store) as again:
        await wait_until_processed(store, "strict", await store.head_position(), timeout=5)
        assert await again.parked() == []
    everything = await positions(store)
    await store.close()
    assert sorted(seen) == everything[: len(seen)]


async def test_filters_and_start_at_the_end(make_store: MakeStore) -> None:
    store = await filled(make_store, 3)
    seen: list[Event[Any]] = []
    subscription = Subscription(
        name="paid-only",
        handler=seen.append,
        configs=[cart_config],
        event_names={"CartPaid"},
        start="end",
    )
    async with (
        SubscriptionRunner(subscription, store),
        Signal(cart_config, store=await make_store(), telemetry=None) as signal,
    ):
        await write_carts(signal, ["late"])
        await wait_until_processed(store, "paid-only", await store.head_position(), timeout=5)
    assert [(e.aggregate_id, type(e.data)) for e in seen] == [("late", CartPaid)]
    assert seen[0].data.total > 0


async def test_an_unknown_event_type_is_parked_not_skipped(make_store: MakeStore) -> None:
    store = await filled(make_store, 1)
    from eventsignal.domain import AggregateConfig

    partial: AggregateConfig[None, object] = (
        AggregateConfig(  # knows ProductAdded only, as an outdated reader would
            name="cart",
            initial_state=None,
            command_handler=lambda c, s: [],
            event_handler=lambda s, e: s,
            events=[ProductAdded],
        )
    )
    subscription = Subscription(
        name="outdated", handler=lambda e: None, configs=[partial], max_attempts=1
    )
    async with SubscriptionRunner(subscription, store):
        await wait_until_processed(store, "outdated", await store.head_position(), timeout=5)
        [parked] = await parked_events(store, "outdated")
    assert parked.event_name == "CartPaid"
    assert "UnknownEventType" in parked.error


async def test_read_your_writes_times_out_with_a_typed_error(make_store: MakeStore) -> None:
    store = await filled(make_store, 2)
    gate = asyncio.Event()

    async def slow(event: Event[Any]) -> None:
        await gate.wait()

    async with SubscriptionRunner(
        Subscription(name="slow", handler=slow, configs=[cart_config]), store
    ):
        head = await store.head_position()
        with pytest.raises(SubscriptionTimeout) as timed_out:
            await wait_until_processed(store, "slow", head, timeout=0.2)
        assert (timed_out.value.subscription, timed_out.value.position) == ("slow", head)
        async with SubscriptionRunner(revenue_projection(), store):
            await wait_until_processed(store, "revenue", head, timeout=5)
            with pytest.raises(SubscriptionTimeout) as timed_out:  # several: one deadline
                await wait_until_processed(store, ["revenue", "slow"], head, timeout=0.2)
            assert timed_out.value.subscription == "slow"
        gate.set()
        await wait_until_processed(store, ["slow", "revenue"], head, timeout=5)
        await wait_until_processed(store, "never-ran", 0, timeout=0)  # nothing to wait for


async def test_two_runners_share_partitions_and_survive_each_other(make_store: MakeStore) -> None:
    store = await filled(make_store, 30)
    options: dict[str, Any] = {"partitions": 4, "lease_ttl": 0.3, "batch_size": 7}
    one = SubscriptionRunner(revenue_projection(**options), store, member="one")
    two = SubscriptionRunner(revenue_projection(**options), await make_store(), member="two")
    await one.start()
    await two.start()
    deadline = asyncio.get_running_loop().time() + 5
    while len(one.partitions) != 2 or len(two.partitions) != 2:
        assert asyncio.get_running_loop().time() < deadline, (one.partitions, two.partitions)
        await asyncio.sleep(0.02)
    await one.stop()
    async with Signal(cart_config, store=await make_store(), telemetry=None) as signal:
        await write_carts(signal, [f"more-{i}" for i in range(10)], seed=2)
        head = await two.store.head_position()
        await wait_until_processed(two.store, "revenue", head, timeout=5)
    assert len(two.partitions) == 4
    assert one.delivered > 0
    assert two.delivered > 0
    await two.stop()
    await assert_projection_matches(store)


async def test_waiting_on_a_subscription_that_never_ran_times_out(make_store: MakeStore) -> None:
    store = await filled(make_store, 1)
    await store.open()
    try:
        with pytest.raises(SubscriptionTimeout) as timed_out:
            await wait_until_processed(store, "nobody", 1, timeout=0.05)
        assert timed_out.value.reached == 0
        assert await subscription_status(store) == []
    finally:
        await store.close()
