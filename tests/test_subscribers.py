"""In-process subscribers and telemetry."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from accounts import Deposit, DepositTwice, Withdraw, config

from eventsignal import CommandRejected, Event, Signal
from eventsignal.stores import MemoryStore
from eventsignal.telemetry import (
    AggregateCreated,
    CommandFailed,
    CommandProcessed,
    EventsProduced,
    ProcessingCommand,
    SubscriberFailed,
    SubscriberInformed,
    Telemetry,
)


async def test_subscribers_get_new_events_in_version_order_after_storing() -> None:
    store = MemoryStore()
    seen: list[tuple[str, int, int]] = []
    stored_when_seen: list[bool] = []

    async def subscriber(event: Event[Any]) -> None:
        stored = await store.read_aggregate(event.aggregate_name, event.aggregate_id)
        stored_when_seen.append(any(e.id == event.id for e in stored))
        seen.append((event.aggregate_id, event.version, event.position))

    async with Signal(config(), store=store, subscribers=[subscriber]) as signal:
        await signal.create("a")
        await signal.create("b")
        await asyncio.gather(
            signal.handle_command("a", DepositTwice(1)),
            signal.handle_command("b", Deposit(1)),
            signal.handle_command("a", Deposit(1)),
        )
        await signal.drain()
    assert all(stored_when_seen)
    assert [v for a, v, _ in seen if a == "a"] == [1, 2, 3]
    assert [v for a, v, _ in seen if a == "b"] == [1]
    assert all(position > 0 for *_, position in seen)


async def test_replayed_events_are_not_delivered() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as writer:
        await writer.create("a")
        await writer.handle_command("a", Deposit(1))
    seen: list[Event[Any]] = []
    async with Signal(config(), store=store, subscribers=[seen.append]) as reader:
        await reader.aggregate("a")  # rebuilds from the store
        await reader.handle_command("a", Deposit(2))
        await reader.drain()
    assert [e.version for e in seen] == [2]


async def test_failing_subscriber_affects_neither_command_nor_others() -> None:
    reports: list[Telemetry] = []
    good: list[int] = []

    def bad(event: Event[Any]) -> None:
        raise RuntimeError("projection bug")

    async with Signal(
        config(), subscribers=[bad, lambda e: good.append(e.version)], telemetry=reports.append
    ) as signal:
        await signal.create("a")
        assert (await signal.handle_command("a", Deposit(3))).balance == 3
        await signal.handle_command("a", Deposit(4))
        await signal.drain()
    assert good == [1, 2]
    failures = [r for r in reports if isinstance(r, SubscriberFailed)]
    assert [(f.version, f.error) for f in failures] == [
        (1, "RuntimeError: projection bug"),
        (2, "RuntimeError: projection bug"),
    ]


async def test_slow_subscriber_does_not_delay_the_command() -> None:
    release = asyncio.Event()
    seen: list[int] = []

    async def slow(event: Event[Any]) -> None:
        await release.wait()
        seen.append(event.version)

    async with Signal(config(), subscribers=[slow]) as signal:
        await signal.create("a")
        await asyncio.wait_for(signal.handle_command("a", Deposit(1)), 1)
        assert seen == []
        release.set()
        await signal.drain()
        assert seen == [1]


async def test_stop_delivers_queued_events() -> None:
    seen: list[int] = []

    async def subscriber(event: Event[Any]) -> None:
        await asyncio.sleep(0)
        seen.append(event.version)

    signal = Signal(config(), subscribers=[subscriber])
    await signal.start()
    await signal.create("a")
    for _ in range(5):
        await signal.handle_command("a", Deposit(1))
    await signal.stop()
    assert seen == [1, 2, 3, 4, 5]


async def test_telemetry_reports_are_typed() -> None:
    reports: list[Telemetry] = []
    async with Signal(config(), subscribers=[lambda e: None], telemetry=reports.append) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(1))
        with pytest.raises(CommandRejected):
            await signal.handle_command("a", Withdraw(100))
        await signal.drain()
    kinds = [type(r) for r in reports]
    for kind in (
        AggregateCreated,
        ProcessingCommand,
        EventsProduced,
        CommandProcessed,
        CommandFailed,
        SubscriberInformed,
    ):
        assert kind in kinds
    failed = next(r for r in reports if isinstance(r, CommandFailed))
    assert failed.aggregate_id == "a"
    assert failed.command == "Withdraw"
    assert "less than 100" in failed.reason


async def test_default_telemetry_logs_at_signals_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eventsignal")
    async with Signal(config()) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(1))
        with pytest.raises(CommandRejected):
            await signal.handle_command("a", Withdraw(100))
        with pytest.raises(Exception, match="not found"):
            await signal.aggregate("missing")
    levels = {r.message.split(" ", 1)[0]: r.levelno for r in caplog.records}
    assert levels["ProcessingCommand"] == logging.INFO
    assert levels["CommandProcessed"] == logging.INFO
    assert levels["CommandFailed"] == logging.ERROR
    assert levels["AggregateMissing"] == logging.ERROR
    assert levels["AggregateCreated"] == logging.DEBUG
    assert all(r.name == "eventsignal" for r in caplog.records)


async def test_failing_telemetry_hook_stops_neither_commands_nor_delivery() -> None:
    seen: list[int] = []

    def broken_hook(report: Telemetry) -> None:
        if isinstance(report, (SubscriberInformed, CommandProcessed)):
            raise RuntimeError("metrics backend down")

    async with Signal(
        config(), subscribers=[lambda e: seen.append(e.version)], telemetry=broken_hook
    ) as signal:
        await signal.create("a")
        assert (await signal.handle_command("a", Deposit(1))).balance == 1
        assert (await signal.handle_command("a", Deposit(2))).balance == 3
        await asyncio.wait_for(signal.drain(), 2)
    assert seen == [1, 2]
