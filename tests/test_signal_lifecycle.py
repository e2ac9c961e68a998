"""Creating, finding and validating aggregates."""

from __future__ import annotations

import pytest
from accounts import Account, Deposit, config

from eventsignal import (
    AggregateExists,
    AggregateNotFound,
    InvalidAggregateId,
    Signal,
    SignalError,
)
from eventsignal.stores import MemoryStore


async def test_create_starts_at_version_zero_with_initial_state() -> None:
    async with Signal(config()) as signal:
        account = await signal.create("a-1")
        assert (account.id, account.state, account.version) == ("a-1", Account(), 0)
        assert signal.pool_size == 1


async def test_create_is_recorded_in_the_store_and_survives_restart() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as first:
        await first.create("a-1")
    async with Signal(config(), store=store) as second:
        account = await second.aggregate("a-1")
        assert account.version == 0
        with pytest.raises(AggregateExists):
            await second.create("a-1")


async def test_create_survives_eviction() -> None:
    async with Signal(config(), pool_size=1) as signal:
        await signal.create("a-1")
        await signal.create("a-2")  # evicts a-1
        assert signal.pool_size == 1
        assert (await signal.aggregate("a-1")).version == 0
        with pytest.raises(AggregateExists):
            await signal.create("a-1")


async def test_used_id_is_taken_across_signals_sharing_a_store() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as one, Signal(config(), store=store) as two:
        await one.create("a-1")
        with pytest.raises(AggregateExists) as taken:
            await two.create("a-1")
        assert taken.value.aggregate_id == "a-1"
        assert taken.value.aggregate_name == "account"


async def test_same_id_under_two_aggregate_types_is_two_aggregates() -> None:
    store = MemoryStore()
    async with (
        Signal(config("savings"), store=store) as savings,
        Signal(config("checking"), store=store) as checking,
    ):
        await savings.create("x")
        await checking.create("x")
        await savings.handle_command("x", Deposit(5))
        assert (await checking.aggregate("x")).state.balance == 0


async def test_unknown_aggregate_is_not_found() -> None:
    async with Signal(config()) as signal:
        with pytest.raises(AggregateNotFound) as missing:
            await signal.aggregate("nobody")
        assert missing.value.aggregate_id == "nobody"
        with pytest.raises(AggregateNotFound):
            await signal.handle_command("nobody", Deposit(1))
        assert signal.pool_size == 0


@pytest.mark.parametrize(
    ("bad_id", "says"),
    [("", "empty"), ("x" * 201, "at most 200"), (42, "string"), ("a\nb", "control")],
)
async def test_ids_are_validated(bad_id: object, says: str) -> None:
    async with Signal(config()) as signal:
        with pytest.raises(InvalidAggregateId, match=says):
            await signal.create(bad_id)  # type: ignore[arg-type]
        with pytest.raises(InvalidAggregateId):
            await signal.aggregate(bad_id)  # type: ignore[arg-type]


async def test_a_signal_must_be_started() -> None:
    signal = Signal(config())
    with pytest.raises(SignalError, match="not started"):
        await signal.create("a-1")
    await signal.start()
    await signal.create("a-1")
    await signal.stop()
    await signal.stop()  # idempotent


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Signal(config(), pool_size=0)


def test_config_needs_events_and_a_valid_name() -> None:
    base = config()
    with pytest.raises(ValueError, match="no event classes"):
        type(base)(
            name="x",
            initial_state=Account(),
            command_handler=base.command_handler,
            event_handler=base.event_handler,
        )
    with pytest.raises(InvalidAggregateId):
        type(base)(
            name="bad name!",
            initial_state=Account(),
            command_handler=base.command_handler,
            event_handler=base.event_handler,
            events=[Deposit],
        )
