"""Snapshots on NATS: a key-value bucket beside the stream, where a newer snapshot always wins."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import nats
import pytest
from accounts import Account, Deposit, config
from nats_admin import changed_for, store_and_operator
from nats_servers import NatsCluster

from eventsignal import AggregateConfig, Signal
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores import NatsStore
from eventsignal.stores.base import Snapshot
from eventsignal.telemetry import SnapshotTaken, Telemetry

pytestmark = pytest.mark.nats


def snapshotted(every: int = 3) -> AggregateConfig[Account, Any]:
    return dataclasses.replace(config(), snapshots=SnapshotPolicy(every=every, schema_version=1))


def snapshot(version: int, aggregate_id: str = "a", name: str = "account") -> Snapshot:
    return Snapshot(
        aggregate_name=name,
        aggregate_id=aggregate_id,
        version=version,
        schema_version=1,
        state=f"state at {version}".encode(),
        taken_at=datetime.now(UTC),
    )


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[NatsStore]:
    store = NatsStore(nats_url, stream=f"test_{uuid4().hex}", durability="ignore")
    await store.open()
    yield store
    await store.close()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.delete_stream(store.stream)
        with contextlib.suppress(nats.js.errors.NotFoundError):  # no snapshot was taken
            await js.delete_key_value(f"{store.stream}_snapshots")
    finally:
        await nc.close()


async def test_the_store_is_its_own_snapshot_store(store: NatsStore) -> None:
    assert snapshot_store_for(store) is store
    assert await store.load_snapshot("account", "a") is None


async def test_snapshot_is_taken_every_n_events_and_used_on_rebuild(store: NatsStore) -> None:
    reports: list[Telemetry] = []
    async with Signal(snapshotted(every=3), store=store, telemetry=reports.append) as signal:
        await signal.create("a")
        for amount in range(1, 8):
            await signal.handle_command("a", Deposit(amount))
        await signal.drain()
    # Snapshots are stored in the background, so their reports may come in either order; the
    # store keeps the newest whatever the order (see the tests below).
    assert sorted(r.version for r in reports if isinstance(r, SnapshotTaken)) == [3, 6]
    saved = await store.load_snapshot("account", "a")
    assert saved is not None
    assert saved.version == 6
    async with Signal(snapshotted(every=3), store=store) as again:
        a = await again.aggregate("a")
        assert again.pool_stats.snapshot_hits == 1
        assert (a.state.balance, a.version) == (28, 7)
        assert a.state.history == tuple(range(1, 8))


async def test_an_older_snapshot_never_replaces_a_newer_one(store: NatsStore) -> None:
    await store.save_snapshot(snapshot(6))
    await store.save_snapshot(snapshot(3))
    await store.save_snapshot(snapshot(6).__replace__(state=b"same version, later"))
    assert (kept := await store.load_snapshot("account", "a")) is not None
    assert (kept.version, kept.state) == (6, b"state at 6")
    await store.save_snapshot(snapshot(9))
    assert (kept := await store.load_snapshot("account", "a")) is not None
    assert (kept.version, kept.state) == (9, b"state at 9")


async def test_racing_saves_from_several_stores_leave_the_newest(
    store: NatsStore, nats_url: str
) -> None:
    others = [NatsStore(nats_url, stream=store.stream, durability="ignore") for _ in range(3)]
    for other in others:
        await other.open()
    try:
        versions = list(range(1, 41))
        random.Random(7).shuffle(versions)
        savers = [store, *others]
        await asyncio.gather(
            *(savers[i % len(savers)].save_snapshot(snapshot(v)) for i, v in enumerate(versions))
        )
        for reader in savers:
            kept = await reader.load_snapshot("account", "a")
            assert kept is not None
            assert (kept.version, kept.state) == (40, b"state at 40")
    finally:
        for other in others:
            await other.close()


@pytest.mark.parametrize(
    ("name", "aggregate_id"),
    [("account", "a.b"), ("dotted.type", "a"), ("account", "with space ✓"), ("a", "~x=y/z")],
)
async def test_any_name_and_id_has_a_snapshot_of_its_own(
    store: NatsStore, name: str, aggregate_id: str
) -> None:
    await store.save_snapshot(snapshot(2, aggregate_id, name))
    await store.save_snapshot(snapshot(5, "plain", "account"))
    kept = await store.load_snapshot(name, aggregate_id)
    assert kept is not None
    assert (kept.aggregate_name, kept.aggregate_id, kept.version) == (name, aggregate_id, 2)


async def test_a_snapshot_saved_after_a_delete_is_kept(
    store: NatsStore,
) -> None:
    # Deleting purges the key, leaving a marker: the next save is written over it.
    await store.save_snapshot(snapshot(6))
    await store.delete_snapshot("account", "a")
    assert await store.load_snapshot("account", "a") is None
    await store.save_snapshot(snapshot(2))
    saved = await store.load_snapshot("account", "a")
    assert saved is not None
    assert saved.version == 2


async def test_snapshot_saves_wait_while_nobody_stores_them(nats_url: str) -> None:
    # As subscription state does: a publish nobody answered stored nothing, so the store asks
    # again until its timeout rather than lose a snapshot over a cluster's or a server's moment.
    async with store_and_operator(nats_url) as (store, nc):
        await store.save_snapshot(snapshot(4))
        bucket = f"{store.stream}_snapshots"
        elsewhere = [f"moved.{bucket}.>"]
        async with changed_for(nc, f"KV_{bucket}", 1.0, subjects=elsewhere) as restored:
            await store.save_snapshot(snapshot(8))
            assert restored.is_set()
        saved = await store.load_snapshot("account", "a")
        assert saved is not None
        assert saved.version == 8


async def test_a_snapshot_read_while_the_bucket_changes_leader_is_asked_again(
    nats_cluster: NatsCluster,
) -> None:
    # A get sent while the bucket elects a new leader goes unanswered; it is asked again, so a
    # rebuild still starts from the snapshot, and a save still compares with the stored one.
    async with store_and_operator(nats_cluster.urls, replicas=3) as (store, nc):
        await store.save_snapshot(snapshot(5))
        stepdown = f"$JS.API.STREAM.LEADER.STEPDOWN.KV_{store.stream}_snapshots"
        for version in (6, 7, 8):
            stepped = await nc.request(stepdown, b"", timeout=5)
            assert b'"success":true' in stepped.data, stepped.data
            loaded = await store.load_snapshot("account", "a")
            assert loaded is not None
            assert loaded.version == version - 1
            stepped = await nc.request(stepdown, b"", timeout=5)
            assert b'"success":true' in stepped.data, stepped.data
            await store.save_snapshot(snapshot(version))
        saved = await store.load_snapshot("account", "a")
        assert saved is not None
        assert saved.version == 8
