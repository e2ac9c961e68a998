"""The state of an aggregate as of a version or a moment, without touching the live copy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from accounts import Account, Deposit, Deposited, Withdraw, config

from eventsignal import AggregateNotFound, Signal, SignalError


async def test_state_at_every_version() -> None:
    async with Signal(config()) as signal:
        live = await signal.create("a")
        for command in (Deposit(5), Deposit(7), Withdraw(2)):
            await live.handle_command(command)
        assert (await signal.state_at("a", version=0)).state == Account()
        assert (await signal.state_at("a", version=2)).state.balance == 12
        past = await signal.state_at("a", version=3)
        assert (past.state, past.version) == (live.state, 3)
        assert live.version == 3  # untouched
        with pytest.raises(SignalError, match="versions 0 to 3, not 4"):
            await signal.state_at("a", version=4)
        with pytest.raises(AggregateNotFound):
            await signal.state_at("nobody", version=0)


async def test_state_at_a_timestamp() -> None:
    async with Signal(config()) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(1))
        await asyncio.sleep(0.01)
        between = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await signal.handle_command("a", Deposit(10))
        past = await signal.state_at("a", timestamp=between)
        assert (past.state.balance, past.version) == (1, 1)
        assert past.timestamp is not None
        assert past.timestamp <= between
        early = await signal.state_at("a", timestamp=datetime(2000, 1, 1, tzinfo=UTC))
        assert (early.version, early.timestamp) == (0, None)
        with pytest.raises(ValueError, match="timezone-aware"):
            await signal.state_at("a", timestamp=datetime(2000, 1, 1))
        with pytest.raises(ValueError, match="either"):
            await signal.state_at("a")


async def test_events_lists_the_decoded_history() -> None:
    async with Signal(config()) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(3), metadata={"correlation_id": "x"})
        events = await signal.events("a")
        assert [(e.version, e.name, dict(e.metadata)) for e in events] == [
            (1, "Deposited", {"correlation_id": "x"})
        ]
        assert events[0].data == Deposited(3)
        assert events[0].position == 1
