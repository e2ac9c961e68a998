"""Read-your-writes: a command can wait until named subscriptions have processed its events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from accounts import Deposit, config

from eventsignal import Event, Signal
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner, SubscriptionTimeout


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
