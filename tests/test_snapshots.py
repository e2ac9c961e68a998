"""Snapshots: taken in the background, used on rebuild, ignored when they no longer fit."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec
import pytest
from accounts import Account, Deposit, config

from eventsignal import AggregateConfig, Signal, SignalError
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.stores import MemoryStore
from eventsignal.telemetry import SnapshotIgnored, SnapshotTaken, Telemetry


def snapshotted(
    every: int | None = 3, schema_version: int = 1, **kw: Any
) -> AggregateConfig[Account, Any]:
    return dataclasses.replace(
        config(), snapshots=SnapshotPolicy(every=every, schema_version=schema_version, **kw)
    )


async def test_snapshot_is_taken_every_n_events_and_used_on_rebuild() -> None:
    store = MemoryStore()
    reports: list[Telemetry] = []
    async with Signal(snapshotted(every=3), store=store, telemetry=reports.append) as signal:
        await signal.create("a")
        for amount in range(1, 8):
            await signal.handle_command("a", Deposit(amount))
        await signal.drain()
    taken = [r.version for r in reports if isinstance(r, SnapshotTaken)]
    assert taken == [3, 6]
    snapshot = await store.load_snapshot("account", "a")
    assert snapshot is not None
    assert snapshot.version == 6
    async with Signal(snapshotted(every=3), store=store) as again:
        a = await again.aggregate("a")
        assert again.pool_stats.snapshot_hits == 1
        assert (a.state.balance, a.version) == (28, 7)
        assert a.state.history == tuple(range(1, 8))


async def test_snapshot_does_not_delay_the_reply() -> None:
    class SlowSnapshots(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def save_snapshot(self, snapshot: Any, *, tenant: str = "") -> None:
            await self.release.wait()
            await super().save_snapshot(snapshot, tenant=tenant)

    store = SlowSnapshots()
    async with Signal(snapshotted(every=1), store=store) as signal:
        await signal.create("a")
        await asyncio.wait_for(signal.handle_command("a", Deposit(1)), 1)
        assert await store.load_snapshot("account", "a") is None
        store.release.set()
        await signal.drain()
        assert await store.load_snapshot("account", "a") is not None


async def test_snapshot_of_another_schema_version_is_ignored() -> None:
    store = MemoryStore()
    async with Signal(snapshotted(every=2, schema_version=1), store=store) as signal:
        await signal.create("a")
        for _ in range(4):
            await signal.handle_command("a", Deposit(1))
    reports: list[Telemetry] = []
    async with Signal(
        snapshotted(every=2, schema_version=2), store=store, telemetry=reports.append
    ) as upgraded:
        a = await upgraded.aggregate("a")
        assert (a.state.balance, a.version) == (4, 4)
        assert upgraded.pool_stats.snapshot_hits == 0
    assert any(isinstance(r, SnapshotIgnored) and "schema version 1" in r.reason for r in reports)


async def test_undecodable_snapshot_is_ignored_not_an_error() -> None:
    store = MemoryStore()
    async with Signal(snapshotted(every=1), store=store) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(5))
        await signal.handle_command("a", Deposit(1))
        await signal.drain()
    snapshot = await store.load_snapshot("account", "a")
    assert snapshot is not None
    assert snapshot.version == 2
    # Corrupt it in place, as a bad disk or a hand-edited row would.
    store._snapshots[("account", "a")] = msgspec.structs.replace(snapshot, state=b"{not json")
    reports: list[Telemetry] = []
    async with Signal(snapshotted(every=1), store=store, telemetry=reports.append) as again:
        assert (await again.aggregate("a")).state.balance == 6
        assert again.pool_stats.snapshot_hits == 0
    assert any(isinstance(r, SnapshotIgnored) and "decoded" in r.reason for r in reports)


async def test_custom_snapshot_predicate() -> None:
    store = MemoryStore()
    policy = SnapshotPolicy(every=None, when=lambda state, version: state.balance >= 10)
    cfg = dataclasses.replace(config(), snapshots=policy)
    async with Signal(cfg, store=store) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(4))
        await signal.drain()
        assert await store.load_snapshot("account", "a") is None
        await signal.handle_command("a", Deposit(6))
        await signal.drain()
    snapshot = await store.load_snapshot("account", "a")
    assert snapshot is not None
    assert snapshot.version == 2


async def test_store_without_snapshots_is_a_clear_error() -> None:
    class Plain:
        """An event store that keeps no snapshots (delegates everything else)."""

        def __init__(self) -> None:
            self._inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            if "snapshot" in name:
                raise AttributeError(name)
            return getattr(self._inner, name)

    store: Any = Plain()
    with pytest.raises(SignalError, match="keeps no snapshots"):
        Signal(snapshotted(), store=store)


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SnapshotPolicy(every=0)
    with pytest.raises(ValueError, match="'every' or 'when'"):
        SnapshotPolicy(every=None)


async def test_eviction_hook_and_pool_stats() -> None:
    evicted: list[tuple[str, int, int]] = []
    async with Signal(
        config(), pool_size=1, on_evict=lambda i, s, v: evicted.append((i, s.balance, v))
    ) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(3))
        await signal.create("b")
        await signal.aggregate("a")
        stats = signal.pool_stats.as_dict()
    assert evicted == [("a", 3, 1), ("b", 0, 0)]
    assert stats["evictions"] == 2
    assert stats["hits"] >= 1
    assert stats["misses"] >= 1
    assert stats["rebuilds"] == 1  # no handle kept a alive, so it came back from the store
