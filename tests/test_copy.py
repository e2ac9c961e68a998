"""Moving a whole store to another backend: ``copy_store``, ``verify_copy``, ``eventsignal copy``.

The stores number events differently (PostgreSQL leaves gaps where an append was rolled back,
SQLite does not), so every positional piece of subscription state must be translated, and the
tests make sure the source has such gaps.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import psycopg
import pytest
from click.testing import CliRunner
from subscription_worker import expected_from_events, projected, revenue_projection, write_carts

from eventsignal import Signal
from eventsignal.cart import AddToCart, Product, cart_config
from eventsignal.cli import main
from eventsignal.copying import CopyRefused, copy_store, verify_copy
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores import EventStore, NatsStore, PostgresStore, SQLiteStore, StoredEvent
from eventsignal.stores.base import Snapshot
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions import SubscriptionRunner, wait_until_processed


@asynccontextmanager
async def opened(*stores: EventStore) -> AsyncIterator[None]:
    for store in stores:
        await store.open()
    try:
        yield
    finally:
        for store in stores:
            await store.close()


def carts(first: int, count: int) -> list[str]:
    return [f"cart-{n}" for n in range(first, first + count)]


async def leave_gaps(store: EventStore) -> None:
    """Have PostgreSQL refuse an append: the positions it drew are never used."""
    events = await store.read_aggregate("cart", "cart-0")
    clash = msgspec.structs.replace(events[0], version=len(events) + 1)  # its id is taken
    with pytest.raises(psycopg.errors.UniqueViolation):
        await store.append("cart", "cart-0", len(events), [clash])


async def fill(store: EventStore, first: int, count: int, seed: int) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await write_carts(signal, carts(first, count), seed=seed, pay_every=2)
        await signal.create(f"empty-{first}")  # an aggregate without events


async def project(store: EventStore) -> int:
    """Run the revenue projection over everything stored; return the events it handled."""
    async with SubscriptionRunner(revenue_projection(partitions=3), store) as runner:
        await wait_until_processed(store, ["revenue"], await store.head_position(), 10.0)
    return runner.delivered


async def extras(store: EventStore) -> None:
    """A snapshot, a parked and a quarantined event: state that names positions."""
    assert isinstance(store, SubscriptionStore)
    snapshots = snapshot_store_for(store)
    assert snapshots is not None
    await snapshots.save_snapshot(
        Snapshot(
            aggregate_name="cart",
            aggregate_id="cart-1",
            version=2,
            schema_version=1,
            state=b'{"items": []}',
            taken_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        )
    )
    parked, quarantined = (await store.read_aggregate("cart", "cart-2"))[:2]
    async with store.subscription_transaction() as tx:
        await tx.park("revenue", parked, "ValueError: no", 3, 1_700_000_000.5)
        await tx.quarantine(quarantined.position, "hand-mended", time.time())


async def state_of(store: EventStore) -> dict[str, Any]:
    """The subscription state, with every position replaced by the event id it names."""
    assert isinstance(store, SubscriptionStore)
    events = {e.position: e.id for e in await store.read_all(0, 100_000)}
    ids = events.get  # position 0 (nothing handled yet) names no event
    async with store.subscription_reads() as reads:
        return {
            "leases": [
                (lease.part, ids(lease.position)) for lease in await reads.leases("revenue")
            ],
            "parked": [
                (p.event_id, ids(p.position), p.error, p.attempts, p.parked_at)
                for p in await reads.parked()
            ],
            "quarantined": {ids(p): reason for p, reason in (await reads.quarantined()).items()},
            "documents": {
                m: [(d.key, d.data, ids(d.position)) for d in await reads.documents(m)]
                for m in await reads.document_models()
            },
        }


async def log(store: EventStore) -> list[tuple[Any, ...]]:
    return [
        (e.id, e.aggregate_id, e.version, e.name, e.timestamp, e.data, dict(e.metadata))
        for e in await store.read_all(0, 100_000)
    ]


async def everything(store: EventStore) -> dict[str, Any]:
    snapshots = snapshot_store_for(store)
    assert snapshots is not None
    return {
        "aggregates": sorted(
            (a.aggregate_name, a.aggregate_id, a.version, a.created_at)
            for a in await store.aggregates()
        ),
        "events": await log(store),
        "snapshot": await snapshots.load_snapshot("cart", "cart-1"),
        "state": await state_of(store),
    }


@pytest.fixture
async def postgres_source(postgres_dsn: str) -> PostgresStore:
    """A PostgreSQL store with carts, gaps in its positions, a projection and its extras."""
    store = PostgresStore(postgres_dsn, migrate=True, max_size=4)
    await fill(store, 0, 12, seed=1)
    async with opened(store):
        await leave_gaps(store)
    await fill(store, 12, 12, seed=2)
    await project(store)
    async with opened(store):
        await leave_gaps(store)
        await extras(store)
    return store


async def test_postgres_to_sqlite_and_back_keeps_everything(
    postgres_source: PostgresStore, tmp_path: Path, postgres_store_factory: Any
) -> None:
    middle = SQLiteStore(tmp_path / "copy.db", migrate=True)
    back = await postgres_store_factory(schema="back")
    async with opened(postgres_source, middle, back):
        original = await everything(postgres_source)
        report = await copy_store(postgres_source, middle, batch=7)
        assert (report.events, report.copied, report.resumed_after) == (
            len(original["events"]),
            len(original["events"]),
            0,
        )
        assert (report.aggregates, report.snapshots, report.state) == (26, 1, "copied")
        assert (report.subscriptions, report.parked, report.quarantined) == (1, 1, 1)
        assert (await verify_copy(postgres_source, middle)).ok
        # SQLite numbers the events without PostgreSQL's gaps, yet the state names the same ones.
        source_positions = [e.position for e in await postgres_source.read_all(0, 10_000)]
        copied_positions = [e.position for e in await middle.read_all(0, 10_000)]
        assert copied_positions == list(range(1, len(source_positions) + 1))
        assert copied_positions != source_positions
        assert await everything(middle) == original

        await copy_store(middle, back)
        assert (await verify_copy(middle, back)).ok
        assert await everything(back) == original


async def test_interrupted_copy_resumes_and_ends_identical(
    postgres_source: PostgresStore, tmp_path: Path
) -> None:
    target = SQLiteStore(tmp_path / "copy.db", migrate=True)

    class Interrupted(Exception):
        pass

    def stop_half_way(done: int, total: int) -> None:
        if done > total // 2:
            raise Interrupted

    async with opened(postgres_source, target):
        with pytest.raises(Interrupted):
            await copy_store(postgres_source, target, progress=stop_half_way, batch=5)
        partial = await verify_copy(postgres_source, target)
        assert not partial.ok
        assert 0 < partial.target.events < partial.source.events

        seen: list[tuple[int, int]] = []
        report = await copy_store(
            postgres_source, target, progress=lambda *p: seen.append(p), batch=5, pipeline=False
        )
        assert report.resumed_after == partial.target.events
        assert report.copied == partial.source.events - partial.target.events
        assert seen[0] == (partial.target.events, partial.source.events)
        assert seen[-1] == (partial.source.events, partial.source.events)
        assert (await verify_copy(postgres_source, target)).ok
        assert await everything(target) == await everything(postgres_source)

        # Once complete, copying again writes nothing and leaves the state alone.
        again = await copy_store(postgres_source, target)
        assert (again.copied, again.state) == (0, "already on the target")


async def test_a_target_with_another_history_is_refused(
    postgres_source: PostgresStore, tmp_path: Path
) -> None:
    other = SQLiteStore(tmp_path / "other.db", migrate=True)
    await fill(other, 0, 1, seed=9)  # cart-0 as well, with other events
    async with opened(postgres_source, other):
        before = await other.head_position()
        with pytest.raises(CopyRefused, match="the target's cart 'cart-0'"):
            await copy_store(postgres_source, other)
        assert await other.head_position() == before


async def test_a_target_with_other_events_of_the_same_aggregates_is_refused(
    postgres_source: PostgresStore, tmp_path: Path
) -> None:
    other = SQLiteStore(tmp_path / "other.db", migrate=True)
    async with opened(postgres_source, other):
        info = {a.aggregate_id: a for a in await postgres_source.aggregates("cart")}
        (first, *_) = await postgres_source.read_all(0, 1)
        forged = msgspec.structs.replace(first, id=uuid.uuid4())
        await other.create(
            "cart", first.aggregate_id, [forged], created_at=info["cart-0"].created_at
        )
        with pytest.raises(CopyRefused) as refused:
            await copy_store(postgres_source, other)
        assert str(forged.id) in str(refused.value)
        assert str(first.id) in str(refused.value)


async def test_runner_and_signal_on_the_target_go_on_where_the_source_stopped(
    postgres_source: PostgresStore, tmp_path: Path
) -> None:
    # Events the projection has not seen yet, after the ones it has.
    await fill(postgres_source, 24, 5, seed=3)
    target = SQLiteStore(tmp_path / "copy.db", migrate=True)
    async with opened(postgres_source, target):
        await copy_store(postgres_source, target)
        copied = {a.aggregate_id: a.version for a in await postgres_source.aggregates()}
    async with Signal(cart_config, store=target, telemetry=None) as signal:
        await signal.handle_command("cart-3", AddToCart(Product("sku-x", 1, 5)))
    async with opened(target):
        versions = {a.aggregate_id: a.version for a in await target.aggregates("cart")}
        (last,) = (await target.read_aggregate("cart", "cart-3"))[-1:]
        assert last.version == versions["cart-3"]
        assert last.position == await target.head_position()
        assert versions["cart-3"] == copied["cart-3"] + 1

    delivered = await project(target)
    # Only the events the source's projection had not handled: the 5 new carts and the command.
    async with opened(target):
        new = [e for e in await target.read_all(0, 100_000) if e.aggregate_id in carts(24, 5)]
        assert delivered == len(new) + 1
        revenue, versions = await expected_from_events(target)
        assert await projected(target) == (revenue, versions, 0)


async def test_verification_finds_a_tampered_target(
    postgres_source: PostgresStore, postgres_store_factory: Any, postgres_dsn: str
) -> None:
    target = await postgres_store_factory(schema="tampered")
    async with opened(postgres_source, target):
        await copy_store(postgres_source, target)
        assert (await verify_copy(postgres_source, target)).ok
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            await conn.execute(
                "UPDATE tampered.eventsignal_events SET data = '\\x7b7d'"
                " WHERE aggregate_id = 'cart-5' AND version = 2"
            )
        checked = await verify_copy(postgres_source, target)
    assert not checked.ok
    assert [m.subject for m in checked.mismatches] == ["cart 'cart-5'"]
    (mismatch,) = checked.mismatches
    assert mismatch.source.split("sha256")[0] == mismatch.target.split("sha256")[0]
    assert checked.source.events == checked.target.events


async def test_to_nats_and_back_keeps_everything(
    postgres_source: PostgresStore, tmp_path: Path, nats_url: str
) -> None:
    stream = f"copy_{uuid.uuid4().hex}"
    on_nats = NatsStore(nats_url, stream=stream)
    back = SQLiteStore(tmp_path / "back.db", migrate=True)
    try:
        async with opened(postgres_source, on_nats, back):
            report = await copy_store(postgres_source, on_nats, batch=50)
            # A current NATS keeps snapshots and subscription state too: everything goes over.
            assert (report.snapshots, report.state) == (1, "copied")
            assert (await verify_copy(postgres_source, on_nats)).ok
            assert (await copy_store(on_nats, back)).state == "copied"
            assert (await verify_copy(postgres_source, back)).ok
            assert await log(back) == await log(postgres_source)
            snapshots = [snapshot_store_for(s) for s in (postgres_source, on_nats, back)]
            kept = [await each.load_snapshot("cart", "cart-1") for each in snapshots if each]
            assert len(kept) == 3
            assert kept[0] is not None
            assert kept == [kept[0]] * 3
    finally:
        connection = await nats.connect(nats_url)
        try:
            await connection.jetstream().delete_stream(stream)
            await connection.jetstream().delete_key_value(f"{stream}_snapshots")
            await connection.jetstream().delete_key_value(f"{stream}_state")
        finally:
            await connection.close()


# The command


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_copy_command_moves_sqlite_to_postgresql_and_back(
    tmp_path: Path, postgres_dsn: str
) -> None:
    source = str(tmp_path / "cart.db")

    async def prepare() -> None:
        store = SQLiteStore(source, migrate=True)
        await fill(store, 0, 10, seed=4)
        await project(store)

    asyncio.run(prepare())
    code, out, err = cli("copy", source, postgres_dsn)
    assert code == 0, err
    events = len(asyncio.run(_read_all(SQLiteStore(source))))
    assert f"copied {events} of {events} events" in out
    assert "subscription state: 1 subscriptions, 0 parked and 0 quarantined events" in out
    assert f"verified: 11 aggregates and {events} events alike on both stores" in out

    back = str(tmp_path / "back.db")
    code, out, err = cli("copy", postgres_dsn, back, "--no-verify")
    assert code == 0, err
    assert "verified" not in out
    code, out, err = cli("copy", source, back)  # the same history: nothing left to copy
    assert code == 0, err
    assert f"copied 0 of {events} events, continuing after {events}" in out


def test_copy_command_fails_on_a_refused_or_differing_target(
    tmp_path: Path, postgres_dsn: str
) -> None:
    source, other = str(tmp_path / "cart.db"), str(tmp_path / "other.db")
    asyncio.run(fill(SQLiteStore(source, migrate=True), 0, 3, seed=5))
    asyncio.run(fill(SQLiteStore(other, migrate=True), 0, 3, seed=6))
    code, _, err = cli("copy", source, other)
    assert code == 1
    assert "Error: the target's cart 'cart-0'" in err

    assert cli("copy", source, postgres_dsn)[0] == 0
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute('UPDATE eventsignal_events SET metadata = \'{"who": "me"}\' WHERE version = 1')
    code, _, err = cli("copy", source, postgres_dsn)
    assert code == 1
    assert "mismatch: cart 'cart-0': source version" in err
    assert "the copy differs from the source in 3 places" in err


def test_copy_command_refuses_a_missing_source(tmp_path: Path) -> None:
    code, _, err = cli("copy", str(tmp_path / "nothing.db"), str(tmp_path / "copy.db"))
    assert code == 1
    assert "no SQLite database at" in err
    assert not (tmp_path / "copy.db").exists()


async def _read_all(store: EventStore) -> list[StoredEvent]:
    async with opened(store):
        return list(await store.read_all(0, 100_000))
