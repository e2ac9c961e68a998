"""Genesis: creating an aggregate together with its first command, atomically."""

from __future__ import annotations

from typing import Any

import pytest
from accounts import Deposit, DepositTwice, config

from eventsignal import AggregateExists, CommandRejected, Event
from eventsignal.pytest_plugin import SignalFactory


async def test_create_with_a_command_stores_creation_and_events_together(
    eventsignal_signals: SignalFactory,
) -> None:
    store = eventsignal_signals.store
    seen: list[Event[Any]] = []
    async with eventsignal_signals(config(), subscribers=[seen.append]) as signal:
        account = await signal.create("a", DepositTwice(5), metadata={"correlation_id": "c"})
        assert (account.state.balance, account.version) == (10, 2)
        await signal.drain()
        stored = await store.read_aggregate("account", "a")
        assert [e.version for e in stored] == [1, 2]
        assert all(e.metadata == {"correlation_id": "c"} for e in stored)
        assert [e.position for e in seen] == [e.position for e in stored]
        with pytest.raises(AggregateExists):
            await signal.create("a", Deposit(1))
        assert len(await store.read_aggregate("account", "a")) == 2


async def test_rejected_genesis_command_leaves_the_id_free(
    eventsignal_signals: SignalFactory,
) -> None:
    store = eventsignal_signals.store
    async with eventsignal_signals(config()) as signal:
        with pytest.raises(CommandRejected, match="cannot deposit 0"):
            await signal.create("a", Deposit(0))
        assert not await store.exists("account", "a")
        assert signal.pool_size == 0
        account = await signal.create("a", Deposit(3))
        assert account.state.balance == 3
