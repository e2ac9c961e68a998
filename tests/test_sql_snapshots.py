"""Snapshots and upcast old rows on the SQL stores (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgspec
import pytest
from accounts import Deposit, DepositMany, config
from test_evolution import NEW, Basket, write_old_history

from eventsignal import Signal
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.stores import EventStore, SQLiteStore
from eventsignal.stores.sql.snapshots import SQLSnapshotStore

SNAPSHOTTED = dataclasses.replace(config(), snapshots=SnapshotPolicy(every=10))


async def check_snapshots(store: EventStore, reopen: Any) -> None:
    async with Signal(SNAPSHOTTED, store=store) as signal:
        await signal.create("a")
        await signal.handle_command("a", DepositMany(1, 25))
        await signal.handle_command("a", Deposit(5))
        await signal.drain()
    snapshots = SQLSnapshotStore(await reopen())
    async with Signal(SNAPSHOTTED, store=snapshots.store) as again:
        latest = await snapshots.load_snapshot("account", "a")
        assert latest is not None
        assert latest.version == 25  # the command that crossed 20 took it
        assert latest.taken_at.tzinfo is not None
        a = await again.aggregate("a")
        assert (a.state.balance, a.version) == (30, 26)
        assert again.pool_stats.snapshot_hits == 1
        # An older snapshot arriving late never replaces a newer one.
        await snapshots.save_snapshot(msgspec.structs.replace(latest, version=3))
        kept = await snapshots.load_snapshot("account", "a")
        assert kept is not None
        assert kept.version == 25


async def test_snapshots_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "events.db"

    async def reopen() -> SQLiteStore:
        return SQLiteStore(path, migrate=True)

    await check_snapshots(SQLiteStore(path, migrate=True), reopen)


@pytest.mark.postgres
async def test_snapshots_on_postgres(postgres_store_factory: Any) -> None:
    await check_snapshots(await postgres_store_factory(), postgres_store_factory)


async def check_upcasting(store: EventStore) -> None:
    await write_old_history(store)
    async with Signal(NEW, store=store) as new:
        basket = await new.aggregate("b")
        assert basket.state == Basket({"tea": (300, 1)}, ("SPRING",))
        raw = await store.read_aggregate("basket", "b")
        assert [e.name for e in raw] == ["ItemAdded", "Discounted"]  # rows were not rewritten


async def test_old_rows_upcast_on_sqlite(tmp_path: Path) -> None:
    await check_upcasting(SQLiteStore(tmp_path / "events.db", migrate=True))


@pytest.mark.postgres
async def test_old_rows_upcast_on_postgres(postgres_store_factory: Any) -> None:
    await check_upcasting(await postgres_store_factory())
