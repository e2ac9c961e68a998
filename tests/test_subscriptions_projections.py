"""Projections and policies: rebuilding from zero with progress, idempotent commands, documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from accounts import Deposit
from accounts import config as account_config
from subscription_worker import expected_from_events, projected, revenue_projection, write_carts

from eventsignal import Event, Signal
from eventsignal.cart import CartPaid, cart_config
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.subscriptions import (
    Commands,
    Progress,
    ReadModel,
    SubscriptionRunner,
    Transaction,
    policy,
    rebuild,
    register,
    registered,
    wait_until_processed,
)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> EventStore:
    """An unopened store with 25 carts in it."""
    made: EventStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        from eventsignal.stores import SQLiteStore

        made = SQLiteStore(tmp_path / "events.db", migrate=True)
    else:
        from eventsignal.stores import PostgresStore

        made = PostgresStore(request.getfixturevalue("postgres_dsn"), migrate=True, max_size=4)
    async with Signal(cart_config, store=made, telemetry=None) as signal:
        await write_carts(signal, [f"cart-{i}" for i in range(25)], seed=3, pay_every=2)
    return made


async def test_rebuild_replays_from_zero_and_reports_progress(store: EventStore) -> None:
    subscription = revenue_projection(batch_size=8)
    async with SubscriptionRunner(subscription, store):
        await wait_until_processed(store, "revenue", await store.head_position())
    await store.open()
    try:
        # Damage the read model: a rebuild must not start from what is there.
        stale = ReadModel[dict[str, int]]("carts", dict[str, int])
        state: Any = store
        await state.setup_subscriptions()
        async with state.subscription_transaction() as raw:
            tx = Transaction(raw)
            await stale.put(tx, "ghost", {"version": 9, "paid": 10**6, "anomalies": 0}, 1)
            await tx.flush()
        assert await stale.read(store, "ghost") is not None

        reports: list[Progress] = []
        final = await rebuild(store, subscription, progress=reports.append, interval=0.01)
        head = await store.head_position()
        assert (final.done, final.total, final.remaining) == (head, head, 0.0)
        assert reports[-1] == final
        assert final.rate > 0
        assert [r.done for r in reports] == sorted(r.done for r in reports)

        revenue, versions = await expected_from_events(store)
        got_revenue, got_versions, anomalies = await projected(store)
        assert (got_revenue, got_versions, anomalies) == (revenue, versions, 0)
    finally:
        await store.close()


def test_projections_are_found_by_name_for_tools() -> None:
    subscription = register(revenue_projection(name="revenue-registered"))
    assert registered("revenue-registered") is subscription
    assert register(subscription) is subscription
    with pytest.raises(ValueError, match="another subscription"):
        register(revenue_projection(name="revenue-registered"))
    with pytest.raises(KeyError, match="revenue-registered"):
        registered("nope")


async def test_a_policy_issues_each_command_once(store: EventStore) -> None:
    async def book(event: Event[Any], commands: Commands) -> None:
        if isinstance(event.data, CartPaid):
            await commands.send(ledger, "ledger", Deposit(event.data.total), create=True)

    bookkeeping = policy("bookkeeping", book, configs=[cart_config])
    ledger = Signal(account_config(), store=store, telemetry=None)
    async with ledger, SubscriptionRunner(bookkeeping, store):
        await wait_until_processed(store, "bookkeeping", await store.head_position())
        revenue, _ = await expected_from_events(store)
        assert (await ledger.aggregate("ledger")).state.balance == revenue

        # Every event delivered again, as after a crash before the checkpoint moved.
        await rebuild(store, bookkeeping)
        stored = await store.read_aggregate("account", "ledger")
        assert (await ledger.aggregate("ledger")).state.balance == revenue
        paid = [
            r
            for r in await store.read_all(0, 10_000)
            if r.aggregate_name == "cart" and r.name == "CartPaid"
        ]
        assert len(stored) == len(paid)
        for deposit, cause in zip(stored, paid, strict=True):
            assert deposit.metadata["causation_id"] == str(cause.id)
            assert deposit.metadata["correlation_id"] == str(cause.id)


async def test_documents_keep_the_position_they_reflect(store: EventStore) -> None:
    totals: ReadModel[dict[str, Any]] = ReadModel("totals")

    async def keep(event: Event[Any], tx: Transaction) -> None:
        if isinstance(event.data, CartPaid):
            await totals.put(tx, event.aggregate_id, {"total": event.data.total}, event.position)
        elif event.aggregate_id == "cart-1":
            await totals.delete(tx, event.aggregate_id)

    projection = revenue_projection(name="totals", handler=keep, read_models=[totals])
    async with SubscriptionRunner(projection, store):
        await wait_until_processed(store, "totals", await store.head_position())
        documents = await totals.read_all(store)
        assert await totals.read(store, "cart-1") is None  # paid every other cart only
        paid = {
            r.aggregate_id: r.position
            for r in await store.read_all(0, 10_000)
            if r.name == "CartPaid"
        }
        assert {d.key: d.position for d in documents} == paid
        assert all(d.value["total"] > 0 for d in documents)
