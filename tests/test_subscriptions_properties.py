"""Property: whatever the interleaving of writers and subscription restarts, the exactly-once
projection sees every event once, in order per aggregate, and equals a fresh fold of the log."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subscription_worker import expected_from_events, projected, revenue_projection

from eventsignal import AggregateExists, CommandRejected, Signal
from eventsignal.cart import AddToCart, CompletePurchase, Product, cart_config
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.subscriptions import SubscriptionRunner, wait_until_processed

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
    runners = [
        SubscriptionRunner(revenue_projection(**options), store, member="a"),
        SubscriptionRunner(revenue_projection(**options), store, member="b"),
    ]
    await runners[0].start()
    writers: list[asyncio.Task[None]] = []
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        for index, (action, value) in enumerate(plan):
            if action == "write":
                writers.append(asyncio.create_task(write(signal, index, value)))
            elif action == "restart":
                runner = runners[value]
                if runner.running:
                    await runner.stop()
                else:
                    await runner.start()
            else:
                await asyncio.sleep(value / 50)
        await asyncio.gather(*writers)
        if not any(r.running for r in runners):
            await runners[0].start()
        await wait_until_processed(store, "revenue", await store.head_position(), timeout=20)
        revenue, versions = await expected_from_events(store)
        assert await projected(store) == (revenue, versions, 0)
    for runner in runners:
        await runner.stop()


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
