"""The live pool: bounded, least recently used out first, one copy per id."""

from __future__ import annotations

import asyncio

from accounts import Deposit, DepositMany, SlowDeposit, config

from eventsignal import Signal
from eventsignal.stores import MemoryStore


async def test_pool_is_bounded_and_evicts_least_recently_used() -> None:
    async with Signal(config(), pool_size=3) as signal:
        for name in ("a", "b", "c"):
            await signal.create(name)
        await signal.handle_command("a", Deposit(1))  # a is now the most recently used
        await signal.create("d")  # evicts b, the least recently used
        assert signal.pool_size == 3
        rebuilds = signal.pool_stats.rebuilds
        await signal.aggregate("a")
        await signal.aggregate("c")
        await signal.aggregate("d")
        assert signal.pool_stats.rebuilds == rebuilds  # all three were live
        await signal.aggregate("b")
        assert signal.pool_stats.rebuilds == rebuilds + 1
        assert signal.pool_size == 3


async def test_concurrent_misses_share_one_rebuild_and_one_copy() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as writer:
        await writer.create("a")
        await writer.handle_command("a", Deposit(5))
    async with Signal(config(), store=store) as signal:
        handles = await asyncio.gather(*(signal.aggregate("a") for _ in range(10)))
        assert signal.pool_stats.rebuilds == 1
        assert signal.pool_size == 1
        await handles[0].handle_command(Deposit(1))
        assert {h.state.balance for h in handles} == {6}


async def test_handle_survives_eviction_and_sees_current_state() -> None:
    async with Signal(config(), pool_size=1) as signal:
        a = await signal.create("a")
        await a.handle_command(Deposit(1))
        await signal.create("b")  # evicts a
        assert signal.pool_size == 1
        # Commands sent by id rebuild a; the old handle follows the live copy.
        await signal.handle_command("a", Deposit(2))
        assert (a.state.balance, a.version) == (3, 2)
        assert signal.pool_stats.rebuilds == 0  # the handle's copy came back, none was built
        await signal.create("c")  # evicts a again
        assert (await a.handle_command(Deposit(4))).balance == 7
        assert a.version == 3
        assert signal.pool_size == 1


async def test_an_evicted_aggregate_no_handle_holds_is_rebuilt_when_used_again() -> None:
    async with Signal(config(), pool_size=1) as signal:
        await signal.create("a")  # its handle dropped at once
        await signal.handle_command("a", Deposit(1))
        await signal.create("b")  # evicts a
        assert (await signal.handle_command("a", Deposit(2))).balance == 3
        assert signal.pool_stats.rebuilds == 1


async def test_busy_aggregate_is_not_evicted() -> None:
    async with Signal(config(), pool_size=1) as signal:
        a = await signal.create("a")
        gate = asyncio.Event()
        busy = asyncio.create_task(a.handle_command(SlowDeposit(1, gate)))
        await asyncio.sleep(0.01)
        await signal.create("b")  # the pool overflows rather than evict a mid-command
        assert signal.pool_size == 2
        second = asyncio.create_task(signal.handle_command("a", Deposit(2)))
        gate.set()
        await busy
        assert (await second).history == (1, 2)
        assert signal.pool_size == 1  # trimmed as soon as a went idle
        assert signal.pool_stats.rebuilds == 0  # a stayed live throughout


async def test_long_history_rebuilds_without_any_timeout() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store, telemetry=None) as writer:
        await writer.create("big")
        for _ in range(100):
            await writer.handle_command("big", DepositMany(1, 1000))
    async with Signal(config(), store=store, telemetry=None) as reader:
        big = await reader.aggregate("big")
        assert big.version == 100_000
        assert big.state.balance == 100_000
