"""Read-your-writes: a command can wait until named subscriptions have processed its events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from accounts import Deposit, config

from eventsignal import Event, Signal
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.subscriptions import (
    ReadModel,
    Subscription,
    SubscriptionRunner,
    SubscriptionTimeout,
    Transaction,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EventStore:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "events.db", migrate=True)


async def test_command_returns_after_the_projection_saw_its_events(store: EventStore) -> None:
    totals: dict[str, int] = {}

    async def project(event: Event[Any]) -> None:
        await asyncio.sleep(0.02)  # a projection slower than the command
        totals[event.aggregate_id] = totals.get(event.aggregate_id, 0) + event.data.amount

    balances = Subscription(name="balances", handler=project, configs=[config()])
    async with Signal(config(), store=store) as signal, SubscriptionRunner(balances, store):
        await signal.create("a")
        for amount in (1, 2, 3):
            await signal.handle_command("a", Deposit(amount), wait_for=["balances"])
            assert totals["a"] == sum(range(1, amount + 1))  # already reflected


async def test_waiting_times_out_with_a_clear_error(store: EventStore) -> None:
    async with Signal(config(), store=store) as signal:
        account = await signal.create("a")
        with pytest.raises(SubscriptionTimeout) as timeout:
            await account.handle_command(Deposit(1), wait_for=["nobody"], wait_timeout=0.2)
        assert "nobody" in str(timeout.value)
        assert account.version == 1  # the command itself was stored


async def test_commands_never_wait_for_a_slow_transactional_handler(tmp_path: Path) -> None:
    """SQLite has one writer: a handler that stages read-model writes must not keep it across
    its awaits, or every command queues behind the handler's sleep."""
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    totals: ReadModel[dict[str, int]] = ReadModel("totals")
    handled = 0
    busy = asyncio.Event()

    async def slow(event: Event[Any], tx: Transaction) -> None:
        nonlocal handled
        busy.set()
        await asyncio.sleep(0.1)
        doc = await totals.get(tx, "all") or {"n": 0}
        await totals.put(tx, "all", {"n": doc["n"] + 1}, event.position)
        handled += 1

    subscription = Subscription(
        name="slow", handler=slow, configs=[config()], read_models=[totals], batch_size=100
    )
    accounts = [f"a{i}" for i in range(100)]
    async with Signal(config(), store=store, telemetry=None) as signal:
        for account in accounts:
            await signal.create(account)
        for _ in range(30):  # a batch of 30 events: 3 s of handler time in one transaction
            await signal.handle_command("a0", Deposit(1))
        async with SubscriptionRunner(subscription, store):
            await busy.wait()  # the handler is inside a batch's transaction now
            started = time.monotonic()
            await asyncio.gather(*(signal.handle_command(a, Deposit(1)) for a in accounts))
            took = time.monotonic() - started
            assert handled < 30  # the handler was still inside its batch
        assert took < 1.0, f"100 commands took {took:.2f} s behind a sleeping handler"
