"""SQLiteStore: the compliance suite, plus what only a durable, multi-connection store can show."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import msgspec
import pytest

from eventsignal import (
    AggregateConfig,
    AggregateExists,
    ConcurrencyError,
    Event,
    EventSerializationError,
    InvalidAggregateId,
    Signal,
    SignalError,
    StoreUnavailable,
)
from eventsignal.stores import EventStore, SQLiteStore
from eventsignal.stores.base import Snapshot
from eventsignal.stores.sql import SQLStore
from eventsignal.stores.sql.snapshots import SQLSnapshotStore
from eventsignal.stores.sqlite import checkpoints
from eventsignal.stores.sqlite.schema import EVENTS, EVENTS_MIGRATIONS, apply_migrations
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions import (
    ReadModel,
    Transaction,
    processed_position,
    subscription_status,
)
from eventsignal.testing import (
    EventStoreCompliance,
    SubscriptionStoreCompliance,
    TenantCompliance,
    make_events,
)


async def _fresh_store() -> SQLiteStore:
    """An opened store in a file of its own, so that no check sees another's state."""
    folder = tempfile.mkdtemp(prefix="eventsignal-sqlite-")
    store = SQLiteStore(Path(folder) / "events.db", migrate=True)
    await store.open()
    return store


async def _remove_store(store: object) -> None:
    assert isinstance(store, SQLiteStore)
    await store.close()
    shutil.rmtree(Path(store.path).parent)


class TestSQLiteStore(EventStoreCompliance):
    async def make_store(self) -> EventStore:
        return await _fresh_store()

    async def dispose_store(self, store: EventStore) -> None:
        await _remove_store(store)


class TestSQLiteStoreSubscriptions(SubscriptionStoreCompliance):
    async def make_store(self) -> SubscriptionStore:
        return await _fresh_store()

    async def dispose_store(self, store: SubscriptionStore) -> None:
        await _remove_store(store)


class TestSQLiteTenants(TenantCompliance):
    async def make_store(self) -> EventStore:
        return await _fresh_store()

    async def dispose_store(self, store: EventStore) -> None:
        await _remove_store(store)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    await store.open()
    yield store
    await store.close()


# A counter, to run the store end to end under Signal.


@dataclass(frozen=True)
class Add:
    amount: int


@dataclass(frozen=True)
class Added:
    amount: int


def handle(command: Add, total: int) -> list[Added]:
    return [Added(command.amount)]


def apply(total: int, event: Event[Added]) -> int:
    return total + event.data.amount


COUNTER = AggregateConfig(
    name="counter", initial_state=0, command_handler=handle, event_handler=apply, events=[Added]
)


def test_is_an_sql_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    assert isinstance(store, SQLStore)
    assert store.dialect == "sqlite"


@pytest.mark.parametrize("path", [":memory:", "", "file::memory:?cache=shared"])
def test_in_memory_database_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="MemoryStore"):
        SQLiteStore(path)


async def test_durable_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = SQLiteStore(path, migrate=True)
    await first.open()
    await first.create("thing", "a")
    written = make_events("a", 0, 3)
    positions = await first.append("thing", "a", 0, written)
    await first.close()

    again = SQLiteStore(path)
    await again.open()
    try:
        read = await again.read_aggregate("thing", "a")
        assert [(e.id, e.position, e.data) for e in read] == [
            (w.id, p, w.data) for w, p in zip(written, positions, strict=True)
        ]
        assert [(a.aggregate_id, a.version) for a in await again.aggregates()] == [("a", 3)]
        # Positions carry on after the last one.
        more = await again.append("thing", "a", 3, make_events("a", 3, 1))
        assert list(more) == [positions[-1] + 1]
    finally:
        await again.close()


async def test_timestamps_round_trip_exactly(store: SQLiteStore) -> None:
    await store.create("thing", "a")
    moments = [
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
    ]
    events = [
        msgspec.structs.replace(event, timestamp=moment)
        for event, moment in zip(make_events("a", 0, 3), moments, strict=True)
    ]
    await store.append("thing", "a", 0, events)
    read = await store.read_aggregate("thing", "a")
    assert [e.timestamp for e in read] == moments
    assert all(e.timestamp.tzinfo is UTC for e in read)


async def test_naive_timestamp_fails_only_its_append(store: SQLiteStore) -> None:
    await store.create("thing", "a")
    naive = msgspec.structs.replace(make_events("a", 0, 1)[0], timestamp=datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        await store.append("thing", "a", 0, [naive])
    assert await store.read_aggregate("thing", "a") == []
    await store.append("thing", "a", 0, make_events("a", 0, 1))


async def test_ids_are_validated_and_stored_verbatim(store: SQLiteStore) -> None:
    for bad in ("", "x" * 201, "tab\there"):
        with pytest.raises(InvalidAggregateId):
            await store.create("thing", bad)
    with pytest.raises(InvalidAggregateId):
        await store.create("thing; DROP TABLE eventsignal_events", "a")
    hostile = "a'); DROP TABLE eventsignal_events; --"
    await store.create("thing", hostile)
    await store.append("thing", hostile, 0, make_events(hostile, 0, 2))
    assert [e.aggregate_id for e in await store.read_aggregate("thing", hostile)] == [hostile] * 2


async def test_two_stores_on_one_file_race_one_version(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    left, right = SQLiteStore(path, migrate=True), SQLiteStore(path)
    await left.open()
    await right.open()
    try:
        await left.create("thing", "a")
        with pytest.raises(AggregateExists):
            await right.create("thing", "a")
        for round_ in range(10):
            version = round_ * 2
            results = await asyncio.gather(
                left.append("thing", "a", version, make_events("a", version, 2)),
                right.append("thing", "a", version, make_events("a", version, 2)),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            assert len(failures) == 1, results
            assert isinstance(failures[0], ConcurrencyError)
            assert failures[0].actual_version == version + 2
        read = await right.read_aggregate("thing", "a")
        assert [e.version for e in read] == list(range(1, 21))
    finally:
        await left.close()
        await right.close()


async def test_followers_of_another_store_on_the_file_are_woken(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer, follower = SQLiteStore(path, migrate=True), SQLiteStore(path)
    await writer.open()
    await follower.open()
    try:
        await writer.create("thing", "a")
        waiting = asyncio.create_task(follower.wait_for_events(0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await writer.append("thing", "a", 0, make_events("a", 0, 1))
        async with asyncio.timeout(2):
            await waiting
    finally:
        await writer.close()
        await follower.close()


# Appends one event to aggregate "thing"/"a" once told to, then prints the time it committed.
_OTHER_PROCESS = """
import asyncio, sys, time
from eventsignal.stores import SQLiteStore
from eventsignal.testing import make_events

async def main():
    store = SQLiteStore(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await store.append("thing", "a", 0, make_events("a", 0, 1))
    print(time.time(), flush=True)
    await store.close()

asyncio.run(main())
"""


async def test_followers_see_commits_of_other_processes_promptly(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, migrate=True)
    await store.open()
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OTHER_PROCESS,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert other.stdin is not None
    assert other.stdout is not None
    try:
        await store.create("thing", "a")
        async with asyncio.timeout(30):
            assert (await other.stdout.readline()).strip() == b"ready"
        waiting = asyncio.create_task(store.wait_for_events(0))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # nothing new yet: the watcher does not wake it for nothing
        other.stdin.write(b"go\n")
        await other.stdin.drain()
        async with asyncio.timeout(10):
            await waiting
            woken = time.time()
            committed = float((await other.stdout.readline()).decode())
        # Without the watcher only a subscription's 1 s poll would notice; it checks every 40 ms.
        assert woken - committed < 0.5
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1]
    finally:
        if other.returncode is None:
            other.kill()
        await other.wait()
        await store.close()


async def test_signal_end_to_end_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    async with Signal(COUNTER, store=SQLiteStore(path, migrate=True), telemetry=None) as signal:
        first = await signal.create("c-1")
        for amount in (1, 2, 3):
            await first.handle_command(Add(amount))
        await signal.create("c-2")
        assert await signal.handle_command("c-2", Add(10)) == 10
        assert first.state == 6
        assert first.version == 3

    async with Signal(COUNTER, store=SQLiteStore(path), telemetry=None) as restarted:
        rebuilt = await restarted.aggregate("c-1")
        assert (rebuilt.state, rebuilt.version) == (6, 3)
        assert await restarted.handle_command("c-2", Add(5)) == 15
        with pytest.raises(AggregateExists):
            await restarted.create("c-1")


async def test_two_signals_on_one_file_stay_consistent(tmp_path: Path) -> None:
    path = tmp_path / "counters.db"
    left = Signal(COUNTER, store=SQLiteStore(path, migrate=True), telemetry=None)
    right = Signal(COUNTER, store=SQLiteStore(path), telemetry=None)
    async with left, right:
        await left.create("c")
        await right.aggregate("c")  # now live in both pools
        await asyncio.gather(
            *(signal.handle_command("c", Add(1)) for signal in (left, right) for _ in range(20))
        )
        assert await right.handle_command("c", Add(0)) == 40  # caught up after its conflicts


async def test_group_commit_shares_transactions(store: SQLiteStore) -> None:
    ids = [f"agg-{i}" for i in range(64)]
    for aggregate_id in ids:
        await store.create("thing", aggregate_id)
    before = store.stats
    results = await asyncio.gather(
        *(store.append("thing", i, 0, make_events(i, 0, 3)) for i in ids)
    )
    after = store.stats
    assert after.appends - before.appends == 64
    assert after.events - before.events == 192
    assert after.transactions - before.transactions < 64 // 4
    positions = [p for result in results for p in result]
    assert sorted(positions) == list(range(1, 193))


async def test_a_bad_request_fails_only_itself(store: SQLiteStore) -> None:
    for aggregate_id in ("a", "b", "c"):
        await store.create("thing", aggregate_id)
    await store.append("thing", "b", 0, make_events("b", 0, 1))
    before = store.stats.transactions
    results = await asyncio.gather(
        store.append("thing", "a", 0, make_events("a", 0, 2)),
        store.append("thing", "b", 0, make_events("b", 0, 2)),  # stale: b is at version 1
        store.append("thing", "a", 2, make_events("a", 2, 1)),  # same aggregate, in order
        store.append("thing", "missing", 0, make_events("missing", 0, 1)),
        store.append("thing", "c", 0, make_events("c", 0, 1)),
        return_exceptions=True,
    )
    assert store.stats.transactions - before == 1
    assert isinstance(results[1], ConcurrencyError)
    assert results[1].actual_version == 1
    assert isinstance(results[3], SignalError)
    assert [list(r) for r in results if not isinstance(r, BaseException)] == [[2, 3], [4], [5]]
    assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3]
    assert [e.version for e in await store.read_aggregate("thing", "b")] == [1]
    assert await store.head_position() == 5


async def test_a_refused_request_among_distinct_aggregates_fails_only_itself(
    store: SQLiteStore,
) -> None:
    """A batch naming each aggregate once is written a statement per table; one refusal in it
    (a stale version, a taken id) still fails that request alone, in the same one commit."""
    for aggregate_id in ("a", "b", "taken"):
        await store.create("thing", aggregate_id)
    await store.append("thing", "b", 0, make_events("b", 0, 1))
    before = store.stats.transactions
    results = await asyncio.gather(
        store.append("thing", "a", 0, make_events("a", 0, 2)),
        store.append("thing", "b", 0, make_events("b", 0, 1)),  # stale: b is at version 1
        store.create("thing", "taken", make_events("taken", 0, 1)),
        store.create("thing", "new", make_events("new", 0, 1)),
        return_exceptions=True,
    )
    assert store.stats.transactions - before == 1
    assert isinstance(results[1], ConcurrencyError)
    assert isinstance(results[2], AggregateExists)
    assert [list(r) for r in results if not isinstance(r, BaseException)] == [[2, 3], [4]]
    assert [e.version for e in await store.read_aggregate("thing", "taken")] == []
    assert await store.head_position() == 4


async def test_a_failed_transaction_fails_every_request(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, migrate=True, busy_timeout=0.2)
    await store.open()
    try:
        await store.create("thing", "a")
        await store.create("thing", "b")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            results = await asyncio.gather(
                store.append("thing", "a", 0, make_events("a", 0, 1)),
                store.append("thing", "b", 0, make_events("b", 0, 1)),
                return_exceptions=True,
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert "write lock" in str(results[0])
        assert await store.head_position() == 0
        await store.append("thing", "a", 0, make_events("a", 0, 1))
    finally:
        await store.close()


async def test_unmigrated_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with pytest.raises(SignalError, match=r"await store\.migrate\(\)") as missing:
        await SQLiteStore(path).open()
    assert "eventsignal migrate" in str(missing.value)
    assert not path.exists()  # a failed open leaves no file behind

    sqlite3.connect(path).close()  # an empty database file
    empty = SQLiteStore(path)
    with pytest.raises(SignalError, match="migrate"):
        await empty.open()
    await empty.migrate()
    await empty.migrate()  # idempotent
    await empty.open()
    try:
        await empty.create("thing", "a")
    finally:
        await empty.close()


async def test_a_database_of_schema_version_2_keeps_its_streams(tmp_path: Path) -> None:
    """Version 3 numbers the streams and finds events by that number: every stream, version,
    tenant and event survives it, their keys stay unique, events of no stream stay in the log,
    and the indexes other components made on the tables are kept."""
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        apply_migrations(conn, EVENTS, EVENTS_MIGRATIONS[:2])
        conn.execute("CREATE INDEX by_created ON eventsignal_aggregates (created_at)")
        conn.execute("CREATE INDEX by_name ON eventsignal_events (name, position)")
        conn.executemany(
            "INSERT INTO eventsignal_aggregates (aggregate_name, aggregate_id, version,"
            " created_at, tenant) VALUES (?, ?, ?, 0, ?)",
            [("thing", "a", 2, ""), ("thing", "b", 0, ""), ("thing", "a", 1, "acme")],
        )
        rows = [(e, "") for e in make_events("a", 0, 2)] + [
            (e, "acme") for e in make_events("a", 0, 1)
        ]
        conn.executemany(
            "INSERT INTO eventsignal_events (position, event_id, aggregate_name, aggregate_id,"
            " version, name, timestamp, data, metadata, tenant)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?, '{}', ?)",
            [
                (n, e.id.bytes, "thing", "a", e.version, e.name, e.data, tenant)
                for n, (e, tenant) in enumerate(rows, start=1)
            ]
            # An event of no stream, as DCB appends store them.
            + [(4, uuid4().bytes, "course", "c1", 4, "Opened", b"{}", "")],
        )
    async with SQLiteStore(path, migrate=True) as store:
        acme = store.for_tenant("acme")
        every = store.for_tenant(None)
        assert {(i.tenant, i.aggregate_id, i.version) for i in await every.aggregates()} == {
            ("", "a", 2),
            ("", "b", 0),
            ("acme", "a", 1),
        }
        assert [e.version for e in await acme.read_aggregate("thing", "a")] == [1]
        assert list(await store.append("thing", "a", 2, make_events("a", 2, 1))) == [5]
        assert list(await acme.append("thing", "a", 1, make_events("a", 1, 1))) == [6]
        with pytest.raises(ConcurrencyError):
            await store.append("thing", "a", 2, make_events("a", 2, 1))
        with pytest.raises(ConcurrencyError):
            await store.append("thing", "b", 1, make_events("b", 1, 1))
        with pytest.raises(AggregateExists):
            await store.create("thing", "b")
        await acme.create("thing", "b")
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3]
        assert [e.version for e in await acme.read_aggregate("thing", "a")] == [1, 2]
        assert [(e.aggregate_id, e.position) for e in await store.read_all()] == [
            ("a", 1),
            ("a", 2),
            ("c1", 4),
            ("a", 5),
        ]
        # Written by hand, without the stream's number: the stream finds it all the same.
        (event,) = make_events("b", 0, 1)
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id,"
                " version, name, timestamp, data) VALUES (?, 'thing', 'b', 1, ?, 0, ?)",
                (event.id.bytes, event.name, event.data),
            )
        assert [e.id for e in await store.read_aggregate("thing", "b")] == [event.id]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        versions = dict(conn.execute("SELECT component, version FROM eventsignal_schema"))
    assert {"by_created", "by_name"} <= indexes
    assert versions[EVENTS] == len(EVENTS_MIGRATIONS) == 3


async def test_components_migrate_step_by_step(store: SQLiteStore) -> None:
    first = [["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"]]
    second = [*first, ["ALTER TABLE notes ADD COLUMN author TEXT"]]
    await store.migrate_component("notes", first)
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO notes (body) VALUES (?)", ("kept",))
    await store.migrate_component("notes", second)
    await store.migrate_component("notes", second)
    async with store.transaction() as tx:
        assert await tx.fetchall("SELECT body, author FROM notes") == [("kept", None)]
        assert await tx.fetchone(
            "SELECT version FROM eventsignal_schema WHERE component = ?", ("notes",)
        ) == (2,)
    with pytest.raises(SignalError, match="newer"):
        await store.migrate_component("notes", first)


async def test_transaction_commits_or_rolls_back(store: SQLiteStore) -> None:
    await store.migrate_component("tally", [["CREATE TABLE tally (n INTEGER NOT NULL)"]])
    async with store.transaction() as tx:
        assert await tx.execute("INSERT INTO tally (n) VALUES (?)", (1,)) == 1
        await tx.executemany("INSERT INTO tally (n) VALUES (?)", [(2,), (3,)])

    async def failing_handler() -> None:
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO tally (n) VALUES (?)", (100,))
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await failing_handler()
    with pytest.raises(SignalError, match="ended"):
        await tx.execute("SELECT 1")
    async with store.transaction() as tx:
        assert await tx.fetchall("SELECT n FROM tally ORDER BY n") == [(1,), (2,), (3,)]


async def test_appends_wait_for_an_open_transaction(store: SQLiteStore) -> None:
    await store.create("thing", "a")
    async with store.transaction() as tx:
        pending = asyncio.create_task(store.append("thing", "a", 0, make_events("a", 0, 1)))
        await asyncio.sleep(0.05)
        assert not pending.done()
        assert await tx.fetchone("SELECT count(*) FROM eventsignal_events") == (0,)
        async with asyncio.timeout(2):  # readers do not wait for the writer
            assert await store.exists("thing", "a")
            assert await store.read_all() == []
    assert list(await pending) == [1]


async def test_undecodable_row_names_aggregate_version_and_event(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "counters.db", migrate=True)
    async with Signal(COUNTER, store=store, telemetry=None) as signal:
        await signal.create("c")
        await signal.handle_command("c", Add(1))
        good = (await store.read_aggregate("counter", "c"))[0]
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id, version, "
                "name, timestamp, data) VALUES (?, 'counter', 'c', 2, 'Added', 0, ?)",
                (b"0123456789abcdef", b"\xff\x00 not json"),
            )
            await tx.execute(
                "UPDATE eventsignal_aggregates SET version = 2 WHERE aggregate_id = 'c'"
            )
        assert good.version == 1
    async with Signal(COUNTER, store=store, telemetry=None) as restarted:
        with pytest.raises(EventSerializationError) as broken:
            await restarted.aggregate("c")
    assert (broken.value.aggregate_name, broken.value.aggregate_id) == ("counter", "c")
    assert (broken.value.version, broken.value.event_name) == (2, "Added")


async def test_open_and_close_are_counted(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    await asyncio.gather(store.open(), store.open())
    await store.create("thing", "a")
    await store.close()
    await store.append("thing", "a", 0, make_events("a", 0, 1))  # one user left
    pending = [
        asyncio.create_task(store.append("thing", "a", v, make_events("a", v, 1)))
        for v in range(1, 6)
    ]
    await asyncio.sleep(0)  # queued, not committed
    await store.close()  # waits for them
    assert all(task.done() for task in pending)
    assert [list(task.result()) for task in pending] == [[2], [3], [4], [5], [6]]
    with pytest.raises(SignalError, match="not open"):
        await store.append("thing", "a", 6, make_events("a", 6, 1))
    with pytest.raises(SignalError, match="not open"):
        await store.read_all()
    await store.close()  # idempotent
    await store.open()
    try:
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3, 4, 5, 6]
    finally:
        await store.close()


async def test_reopening_while_the_last_close_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    await store.open()
    await store.create("thing", "a")
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)  # the close has begun
    await store.open()
    await closing
    try:
        await store.append("thing", "a", 0, make_events("a", 0, 1))
        assert await store.head_position() == 1
    finally:
        await store.close()


async def test_a_failed_append_alone_leaves_nothing_behind(store: SQLiteStore) -> None:
    await store.create("thing", "a")
    await store.create("thing", "b")
    taken = make_events("a", 0, 1)
    await store.append("thing", "a", 0, taken)
    before = store.stats
    reused = [msgspec.structs.replace(make_events("b", 0, 2)[0], id=taken[0].id)]
    with pytest.raises(ValueError, match="already stored"):
        await store.append("thing", "b", 0, reused)  # fails after b's version was advanced
    assert store.stats == before
    assert [(a.aggregate_id, a.version) for a in await store.aggregates()] == [("a", 1), ("b", 0)]
    assert list(await store.append("thing", "b", 0, make_events("b", 0, 2))) == [2, 3]


async def test_positions_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, migrate=True)
    await store.open()
    try:
        await store.create("thing", "a")
        assert list(await store.append("thing", "a", 0, make_events("a", 0, 2))) == [1, 2]
        # Another connection (another process) writes a row far ahead, then deletes it.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute(
            "INSERT INTO eventsignal_events (position, event_id, aggregate_name, aggregate_id, "
            "version, name, timestamp, data) VALUES (50, ?, 'thing', 'x', 1, 'E', 0, x'')",
            (b"0123456789abcdef",),
        )
        other.execute("DELETE FROM eventsignal_events WHERE position = 50")
        other.close()
        assert list(await store.append("thing", "a", 2, make_events("a", 2, 3))) == [51, 52, 53]
        assert [e.position for e in await store.read_all()] == [1, 2, 51, 52, 53]
    finally:
        await store.close()


async def test_cancelled_callers_leave_the_writer_consistent(store: SQLiteStore) -> None:
    await store.create("thing", "a")
    await store.migrate_component("tally", [["CREATE TABLE tally (n INTEGER NOT NULL)"]])

    async def held_open() -> None:
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO tally (n) VALUES (1)")
            await asyncio.sleep(10)

    holder = asyncio.create_task(held_open())
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(store.append("thing", "a", 0, make_events("a", 0, 1)))
    await asyncio.sleep(0.01)
    holder.cancel()
    queued.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(holder, queued, return_exceptions=True)
        async with store.transaction() as tx:
            assert await tx.fetchall("SELECT n FROM tally") == []  # rolled back
        # The cancelled append may have been stored; the next one lines up either way.
        version = len(await store.read_aggregate("thing", "a"))
        assert list(await store.append("thing", "a", version, make_events("a", version, 1))) == [
            version + 1
        ]


async def test_reads_never_queue_behind_a_write_transaction(store: SQLiteStore) -> None:
    snapshots = SQLSnapshotStore(store)
    taken = Snapshot(
        aggregate_name="thing",
        aggregate_id="a",
        version=3,
        schema_version=1,
        state=b"state",
        taken_at=datetime.now(UTC),
    )
    await snapshots.save_snapshot(taken)
    assert await subscription_status(store) == []  # creates the subscription tables first
    totals: ReadModel[dict[str, int]] = ReadModel("totals")
    async with store.subscription_transaction() as state:
        tx = Transaction(state)
        await totals.put(tx, "a", {"n": 1}, 1)
        await tx.flush()

    async def held_open() -> None:  # a subscription's batch, say, stuck in its handler
        async with store.transaction() as tx:
            await tx.execute("DELETE FROM eventsignal_snapshots")
            await asyncio.sleep(10)

    holder = asyncio.create_task(held_open())
    await asyncio.sleep(0.05)
    try:
        async with asyncio.timeout(2):
            assert await snapshots.load_snapshot("thing", "a") == taken  # the committed state
            assert await subscription_status(store) == []
            assert await processed_position(store, "nobody") is None
            assert await totals.read(store, "a") == {"n": 1}
            assert [d.key for d in await totals.read_all(store)] == ["a"]
        assert not holder.done()
    finally:
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder


async def test_reads_pass_a_write_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, migrate=True, busy_timeout=30)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        assert await processed_position(store, "nobody") is None  # tables created beforehand
        blocker.execute("BEGIN IMMEDIATE")
        async with asyncio.timeout(2):
            assert await processed_position(store, "nobody") is None
            assert await store.head_position() == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        await store.close()


async def test_a_read_transaction_sees_one_snapshot_and_cannot_write(store: SQLiteStore) -> None:
    await store.migrate_component("tally", [["CREATE TABLE tally (n INTEGER NOT NULL)"]])
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO tally (n) VALUES (1)")
    async with store.read_transaction() as reader:
        assert await reader.fetchall("SELECT n FROM tally") == [(1,)]
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO tally (n) VALUES (2)")
        assert await reader.fetchall("SELECT n FROM tally") == [(1,)]  # as when it began
        with pytest.raises(SignalError, match="cannot write"):
            await reader.execute("INSERT INTO tally (n) VALUES (3)")
    with pytest.raises(SignalError, match="ended"):
        await reader.fetchone("SELECT 1")
    async with store.read_transaction() as reader:
        assert await reader.fetchall("SELECT n FROM tally ORDER BY n") == [(1,), (2,)]


async def test_closing_the_last_store_on_a_file_lets_go_of_it(tmp_path: Path) -> None:
    """The watcher that notices other processes' commits holds a connection to the file; once
    the store is closed nothing may (the file may be deleted next)."""
    path = tmp_path / "events.db"
    store = SQLiteStore(path, migrate=True)
    await store.open()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.2):
            await store.wait_for_events(0)  # a follower: the watcher starts

    def watching() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.endswith(str(path.resolve()))]

    assert watching()
    await store.close()
    assert watching() == []


def _wal_pages(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return (wal.stat().st_size - 32) // 4120 if wal.exists() and wal.stat().st_size else 0


async def test_commits_leave_checkpoints_to_a_thread_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No commit checkpoints; the log still stays bounded under a steady stream of commits, and is
    truncated once they stop."""
    monkeypatch.setattr(checkpoints, "WAL_LIMIT", 40)
    monkeypatch.setattr(checkpoints, "INTERVAL", 0.001)
    monkeypatch.setattr(checkpoints, "IDLE", 0.2)
    path = tmp_path / "events.db"
    async with SQLiteStore(path, migrate=True) as store:
        async with store.transaction() as tx:
            assert await tx.fetchone("PRAGMA wal_autocheckpoint") == (0,)
        for n in range(60):
            await asyncio.gather(
                *(
                    store.create("thing", f"{n}-{k}", make_events(f"{n}-{k}", 0, 1))
                    for k in range(20)
                )
            )
            await asyncio.sleep(0.005)  # time for the checkpointer's thread, however busy the host
        # The file keeps its largest size; unbounded, it would hold every batch's pages: 700 or so.
        assert _wal_pages(path) < 200
        assert len(await store.read_all(limit=5000)) == 1200
        for _ in range(100):  # idle: truncated after IDLE
            if not _wal_pages(path):
                break
            await asyncio.sleep(0.05)
        assert _wal_pages(path) == 0
        assert len(await store.read_all(limit=5000)) == 1200
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM eventsignal_events").fetchone() == (1200,)
