"""Property: whatever the interleaving of writers and subscription restarts, the exactly-once
projection sees every event once, in order per aggregate, and equals a fresh fold of the log."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subscription_worker import expected_from_events, projected, revenue_projection

from eventsignal import AggregateExists, CommandRejected, Event, Signal
from eventsignal.cart import AddToCart, CompletePurchase, Product, cart_config
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner, wait_until_processed

Step = tuple[str, int]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(min_value=1, max_value=12)),
        st.tuples(st.just("restart"), st.integers(min_value=0, max_value=1)),
        st.tuples(st.just("pause"), st.integers(min_value=0, max_value=3)),
    ),
    min_size=1,
    max_size=12,
)


async def write(signal: Signal[Any, Any], seed: int, commands: int) -> None:
    """``commands`` commands on a few carts, some of them rejected (paid carts, duplicates)."""
    for n in range(commands):
        cart_id = f"cart-{(seed * 7 + n) % 5}"
        with contextlib.suppress(AggregateExists):
            await signal.create(cart_id)
        command: object = (
            CompletePurchase()
            if n % 4 == 3
            else AddToCart(Product(sku=f"s{seed}-{n}", quantity=1 + n % 3, price=10 + seed))
        )
        with contextlib.suppress(CommandRejected):
            await signal.handle_command(cart_id, command)


async def scenario(store: EventStore, plan: list[Step]) -> None:
    options: dict[str, Any] = {"partitions": 3, "batch_size": 4, "lease_ttl": 0.06}
    delivered: dict[str, list[int]] = defaultdict(list)  # at-least-once: versions as delivered

    def log(event: Event[Any]) -> None:
        delivered[event.aggregate_id].append(event.version)

    def pair(member: str) -> list[SubscriptionRunner]:
        return [
            SubscriptionRunner(revenue_projection(**options), store, member=member),
            SubscriptionRunner(
                Subscription(name="log", handler=log, configs=[cart_config], **options),
                store,
                member=member,
            ),
        ]

    members = [pair("a"), pair("b")]
    for runner in members[0]:
        await runner.start()
    writers: list[asyncio.Task[None]] = []
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        for index, (action, value) in enumerate(plan):
            if action == "write":
                writers.append(asyncio.create_task(write(signal, index, value)))
            elif action == "restart":
                for runner in members[value]:
                    if runner.running:
                        await runner.stop()
                    else:
                        await runner.start()
            else:
                await asyncio.sleep(value / 50)
        await asyncio.gather(*writers)
        if not any(runner.running for runner in members[0] + members[1]):
            for runner in members[0]:
                await runner.start()
        head = await store.head_position()
        await wait_until_processed(store, ["revenue", "log"], head, timeout=20)
        revenue, versions = await expected_from_events(store)
        # Exactly-once: each event applied once, in order per aggregate (anomalies == 0).
        assert await projected(store) == (revenue, versions, 0)
    for runner in members[0] + members[1]:
        await runner.stop()
    # At-least-once: per aggregate, never a gap and never a step back except to redeliver.
    assert set(delivered) == set(versions)
    for aggregate_id, seen in delivered.items():
        highest = 0
        for version in seen:
            assert version <= highest + 1, (aggregate_id, seen)
            highest = max(highest, version)
        assert highest == versions[aggregate_id]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_memory_store_any_interleaving(plan: list[Step]) -> None:
    asyncio.run(scenario(MemoryStore(), plan))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_sqlite_store_any_interleaving(plan: list[Step]) -> None:
    from eventsignal.stores import SQLiteStore

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(SQLiteStore(Path(folder) / "events.db", migrate=True), plan))
