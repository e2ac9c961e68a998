"""PostgresStore under faults: lost and stalled connections, an unreachable server, a killed
writer, and subscription handlers too slow for the server's idle-transaction limit.

The shared server is never restarted: a TCP proxy started by the test stands between the store and
PostgreSQL. Stopping it drops every connection exactly as a server restart would; stalling it
freezes the connections open at that moment (sockets open, no bytes moving), as a broken network
path does, while new connections work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psycopg
import pytest
from accounts import Deposit, DepositMany, config
from conftest import PostgresStoreFactory
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from eventsignal import Event, Signal, StoreUnavailable
from eventsignal.dcb import AppendCondition, AppendConditionFailed, DcbEvent, Query, QueryItem, view
from eventsignal.stores import PostgresStore
from eventsignal.subscriptions import (
    ReadModel,
    Subscription,
    SubscriptionRunner,
    Transaction,
    parked_events,
    wait_until_processed,
)
from eventsignal.testing import make_events

pytestmark = pytest.mark.postgres

T = TypeVar("T")
_MARKER = b"cut-the-reply-0b7f"


class Proxy:
    """Forwards 127.0.0.1:<port> to the PostgreSQL server; can be stopped and started again.

    With ``cut_reply_after_marker`` set, the connection that sends ``_MARKER`` has its request
    delivered but its reply dropped: the server commits, the client never hears of it.
    ``stall()`` stops every open connection from moving bytes, for good; later ones flow.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cut_reply_after_marker = False
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._flows: set[asyncio.Event] = set()
        self._stalled: set[asyncio.Event] = set()

    def stall(self) -> None:
        for flow in self._flows:
            flow.clear()
        self._stalled |= self._flows
        self._flows = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()
        for flow in self._stalled:  # let the frozen links see their sockets are gone, and end
            flow.set()
        self._stalled.clear()

    async def _link(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self.target)
        except OSError:
            client_out.transport.abort()
            return
        self._links |= {client_out, server_out}
        replying = asyncio.Event()
        replying.set()
        flowing = asyncio.Event()
        flowing.set()
        self._flows.add(flowing)

        async def upstream() -> None:
            tail = b""
            while chunk := await client_in.read(65536):
                await flowing.wait()
                server_out.write(chunk)
                if self.cut_reply_after_marker and _MARKER in tail + chunk:
                    replying.clear()
                    await asyncio.sleep(0.5)  # let the server commit, then vanish
                    client_out.transport.abort()
                    server_out.transport.abort()
                    return
                tail = chunk[-len(_MARKER) :]

        async def downstream() -> None:
            while chunk := await server_in.read(65536):
                await flowing.wait()
                if replying.is_set():
                    client_out.write(chunk)

        try:
            await asyncio.gather(upstream(), downstream())
        except OSError:
            pass
        finally:
            self._flows.discard(flowing)
            client_out.transport.abort()
            server_out.transport.abort()


@pytest.fixture
async def proxy(postgres_dsn: str) -> AsyncIterator[Proxy]:
    info = conninfo_to_dict(postgres_dsn)
    proxy = Proxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432))))
    await proxy.start()
    yield proxy
    await proxy.stop()


def through(proxy: Proxy, dsn: str) -> str:
    return make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))


async def eventually(action: Callable[[], Awaitable[T]], within: float) -> T:
    """Retry ``action`` while the store is unavailable, for up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await action()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_store_fails_clearly_then_reconnects(postgres_dsn: str, proxy: Proxy) -> None:
    store = PostgresStore(through(proxy, postgres_dsn), migrate=True, max_size=3, timeout=1)
    async with store:
        await store.create("thing", "a")
        await store.append("thing", "a", 0, make_events("a", 0, 2))

        await proxy.stop()
        with pytest.raises(StoreUnavailable, match="PostgreSQL unavailable"):
            await store.append("thing", "a", 2, make_events("a", 2, 1))
        with pytest.raises(StoreUnavailable):
            await store.read_aggregate("thing", "a")

        await proxy.start()
        await eventually(lambda: store.append("thing", "a", 2, make_events("a", 2, 1)), 15)
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3]

        # The listening connection came back too: another store's append wakes us.
        async with PostgresStore(postgres_dsn) as other:
            head = await store.head_position()
            waiting = asyncio.create_task(store.wait_for_events(head))
            await asyncio.sleep(0.1)
            await other.append("thing", "a", 3, make_events("a", 3, 1))
            async with asyncio.timeout(5):
                await waiting


async def test_signal_commands_fail_during_outage_and_work_after(
    postgres_dsn: str, proxy: Proxy
) -> None:
    store = PostgresStore(through(proxy, postgres_dsn), migrate=True, max_size=3, timeout=1)
    async with Signal(config(), store=store, telemetry=None) as accounts:
        await accounts.create("a-1")
        await accounts.handle_command("a-1", Deposit(5))
        await proxy.stop()
        with pytest.raises(StoreUnavailable):
            await accounts.handle_command("a-1", Deposit(7))
        await proxy.start()
        state = await eventually(lambda: accounts.handle_command("a-1", Deposit(11)), 15)
    async with Signal(config(), store=PostgresStore(postgres_dsn), telemetry=None) as fresh:
        assert (await fresh.aggregate("a-1")).state == state
        assert (await fresh.aggregate("a-1")).state.history == (5, 11)


async def test_unknown_commit_outcome_is_never_reported_as_success(
    postgres_dsn: str, proxy: Proxy
) -> None:
    store = PostgresStore(through(proxy, postgres_dsn), migrate=True, max_size=2, timeout=2)
    async with store:
        await store.create("thing", "a")
        events = make_events("a", 0, 3)
        events[0] = msgspec.structs.replace(events[0], metadata={"m": _MARKER.decode()})
        proxy.cut_reply_after_marker = True
        with pytest.raises(StoreUnavailable, match="may or may not be stored"):
            await store.append("thing", "a", 0, events)
        proxy.cut_reply_after_marker = False
        # The server did commit: re-reading shows it, and nothing is stored twice.
        stored = await eventually(lambda: store.read_aggregate("thing", "a"), 15)
        assert [e.id for e in stored] == [e.id for e in events]


async def test_stalled_connection_fails_its_command_within_the_timeout(
    postgres_dsn: str, proxy: Proxy
) -> None:
    """A silent connection fails its command by the deadline; the store goes on without it."""
    dsn = through(proxy, postgres_dsn)
    store = PostgresStore(dsn, migrate=True, max_size=3, timeout=0.5, poll_interval=0.2)
    async with store, asyncio.timeout(10):  # before deadlines, the stall held everything forever
        await store.create("thing", "a")

        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"did not answer within 0\.5s while reading"):
            await store.read_aggregate("thing", "a")
        assert time.monotonic() - started < 2
        assert len(await store.read_aggregate("thing", "a")) == 0  # on a fresh connection

        proxy.stall()
        started = time.monotonic()
        stalled = asyncio.create_task(store.append("thing", "a", 0, make_events("a", 0, 1)))
        await asyncio.sleep(0.1)  # that batch is in flight; this one queues behind it
        behind = asyncio.create_task(store.create("thing", "b", make_events("b", 0, 1)))
        with pytest.raises(StoreUnavailable, match="may or may not be stored"):
            await stalled
        assert len(await behind) == 1
        assert time.monotonic() - started < 3

        # The stalled append reached the server, or not: either way nothing half-done, and the
        # store, listening connection included, works by itself.
        stored = len(await store.read_aggregate("thing", "a"))
        assert stored in (0, 1)
        head = await store.head_position()
        waiting = asyncio.create_task(store.wait_for_events(head))
        async with PostgresStore(postgres_dsn) as other:
            await other.append("thing", "a", stored, make_events("a", stored, 1))
        await waiting


async def test_appends_by_query_fail_clearly_and_never_report_an_unknown_outcome(
    postgres_dsn: str, proxy: Proxy
) -> None:
    store = PostgresStore(through(proxy, postgres_dsn), migrate=True, max_size=2, timeout=1)
    async with store, asyncio.timeout(30):
        dcb = view(store)
        seat = Query([QueryItem(tags=["seat"])])
        await dcb.append(DcbEvent("Opened", b"{}"))  # the dcb schema component is in place

        proxy.cut_reply_after_marker = True
        with pytest.raises(StoreUnavailable, match="may or may not be stored"):
            await dcb.append(DcbEvent("Taken", _MARKER, ["seat"]), AppendCondition(seat))
        proxy.cut_reply_after_marker = False
        # The server did commit: reading shows it once, and its condition now fails.
        taken = await eventually(lambda: dcb.read(seat), 15)
        assert [e.event.data for e in taken] == [_MARKER]
        with pytest.raises(AppendConditionFailed):
            await dcb.append(DcbEvent("Taken", b"{}", ["seat"]), AppendCondition(seat))

        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"did not answer within 1s"):
            await dcb.append(DcbEvent("Taken", b"{}", ["table"]))
        assert time.monotonic() - started < 3

        await proxy.stop()
        with pytest.raises(StoreUnavailable, match="PostgreSQL"):
            await dcb.append(DcbEvent("Taken", b"{}", ["table"]))
        await proxy.start()
        await eventually(lambda: dcb.append(DcbEvent("Taken", b"{}", ["table"])), 15)
        assert len(await dcb.read(Query([QueryItem(tags=["table"])]))) in (1, 2)


async def test_stalled_commit_of_a_transaction_is_unsure(postgres_dsn: str, proxy: Proxy) -> None:
    store = PostgresStore(through(proxy, postgres_dsn), migrate=True, max_size=2, timeout=0.5)

    async def write_then_stall() -> None:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE scratch (n int)")
            proxy.stall()  # the COMMIT is sent into the void

    async with store, asyncio.timeout(10):
        with pytest.raises(StoreUnavailable, match="may or may not be committed"):
            await write_then_stall()
        async with store.transaction() as tx:
            assert await tx.fetchone("SELECT 1") == (1,)


async def _deposits(store: PostgresStore, count: int) -> int:
    """``count`` deposits of 1 on one account; returns the head position."""
    async with Signal(config(), store=store, telemetry=None) as accounts:
        await accounts.create("a-1")
        await accounts.handle_command("a-1", DepositMany(1, count))
    return await store.head_position()


async def test_a_slow_handler_progresses_within_the_idle_limit(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """Staged writes only, 20 ms per event: a 60-event batch outlasts the 0.5 s idle limit."""
    totals: ReadModel[dict[str, int]] = ReadModel("totals")
    calls = 0

    async def count(event: Event[Any], tx: Transaction) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        doc = await totals.get(tx, "all") or {"n": 0}
        await totals.put(tx, "all", {"n": doc["n"] + 1}, event.position)

    store = await postgres_store_factory()
    async with store:
        head = await _deposits(store, 60)
        sub = Subscription(
            name="slow", handler=count, configs=[config()], lease_ttl=0.25, batch_size=100
        )
        async with SubscriptionRunner(sub, store) as runner:
            await wait_until_processed(store, "slow", head, timeout=15)
            assert runner.error is None
        assert await totals.read(store, "all") == {"n": 60}
        assert calls <= 66  # before, the batch was redone until the test gave up
        assert await parked_events(store, "slow") == []


async def test_a_handler_slower_than_the_idle_limit_is_parked_as_too_slow(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """One event holds its transaction longer than the idle limit: it is the handler's failure,
    not an outage. (Its own SQL begins the transaction; staged writes alone would not.)"""
    seen: list[int] = []

    async def note(event: Event[Any], tx: Transaction) -> None:
        await tx.execute("SELECT 1")
        if event.version == 3:
            await asyncio.sleep(0.6)  # past the 0.5 s a transaction may sit idle
        seen.append(event.version)

    store = await postgres_store_factory()
    async with store:
        head = await _deposits(store, 6)
        sub = Subscription(
            name="stuck",
            handler=note,
            configs=[config()],
            lease_ttl=0.25,
            max_attempts=2,
            retry_delay=0,
        )
        async with SubscriptionRunner(sub, store):
            await wait_until_processed(store, "stuck", head, timeout=15)
        (parked,) = await parked_events(store, "stuck")
        assert parked.version == 3
        assert parked.error.startswith("HandlerTooSlow: the handler held its transaction")
        assert [v for v in (1, 2, 4, 5, 6) if v in seen] == [1, 2, 4, 5, 6]


async def test_a_command_the_server_cannot_run_now_says_nothing_was_stored(
    postgres_dsn: str,
) -> None:
    """The server answering with an error (here a lock timeout; a full disk alike) is no lost
    outcome: the append was rolled back, and the connection is kept."""
    options = f"{conninfo_to_dict(postgres_dsn)['options']} -c lock_timeout=200"
    store = PostgresStore(make_conninfo(postgres_dsn, options=options), migrate=True, max_size=1)
    async with store:
        await store.create("thing", "a")
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as other:
            await other.execute("SELECT 1 FROM eventsignal_aggregates FOR UPDATE")
            with pytest.raises(StoreUnavailable, match="rolled back: nothing was stored") as info:
                await store.append("thing", "a", 0, make_events("a", 0, 1))
            assert "may or may not" not in str(info.value)
        await store.append("thing", "a", 0, make_events("a", 0, 2))
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]


async def test_unreachable_server_fails_open(postgres_dsn: str, proxy: Proxy) -> None:
    await proxy.stop()
    store = PostgresStore(through(proxy, postgres_dsn), timeout=0.5)
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        await store.open()
    assert not store.is_open


async def test_terminated_backends_are_replaced(
    postgres_store_factory: PostgresStoreFactory, postgres_dsn: str
) -> None:
    async with await postgres_store_factory() as store:
        await store.create("thing", "a")
        await store.append("thing", "a", 0, make_events("a", 0, 1))
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            others = (
                "FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            await admin.execute(f"SELECT pg_terminate_backend(pid) {others}")
            for _ in range(500):  # as after a restart: the old backends are gone
                if not await (await admin.execute(f"SELECT 1 {others}")).fetchone():
                    break
                await asyncio.sleep(0.01)
        await store.append("thing", "a", 1, make_events("a", 1, 1))
        assert len(await store.read_aggregate("thing", "a")) == 2


def test_killed_writer_leaves_only_whole_commands(postgres_dsn: str) -> None:
    """SIGKILL a writer mid-load: every acknowledged command is stored, none half-written."""
    asyncio.run(PostgresStore(postgres_dsn).migrate())
    writer = Path(__file__).with_name("pg_writer.py")
    process = asyncio.run(_run_writer_until_killed(writer, postgres_dsn, acks=300))
    acknowledged: dict[str, int] = {}
    for line in process:
        aggregate_id, version = line.split()
        acknowledged[aggregate_id] = max(acknowledged.get(aggregate_id, 0), int(version))
    assert sum(v // 3 for v in acknowledged.values()) >= 300

    with psycopg.connect(postgres_dsn) as conn:
        versions: dict[str, list[int]] = dict(
            conn.execute(
                "SELECT aggregate_id, array_agg(version ORDER BY version) FROM eventsignal_events"
                " GROUP BY aggregate_id"
            ).fetchall()
        )
        recorded: dict[str, int] = dict(
            conn.execute("SELECT aggregate_id, version FROM eventsignal_aggregates")
        )
    for aggregate_id, stored in versions.items():
        assert stored == list(range(1, len(stored) + 1)), aggregate_id
        assert len(stored) % 3 == 0, aggregate_id  # no half-written command
        assert recorded[aggregate_id] == len(stored)
    for aggregate_id, acked in acknowledged.items():
        assert len(versions[aggregate_id]) >= acked, aggregate_id


async def _run_writer_until_killed(writer: Path, dsn: str, *, acks: int) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(writer),
        dsn,
        "16",
        stdout=asyncio.subprocess.PIPE,
        # The test helpers, and the code under test wherever the caller's PYTHONPATH found it.
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(writer.parent), *_pythonpath()])},
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(lines) < acks:
                line = await process.stdout.readline()
                if not line:
                    raise AssertionError(f"the writer stopped after {len(lines)} commands")
                lines.append(line.decode())
    finally:
        process.send_signal(signal.SIGKILL)
    # Whatever it printed before dying was acknowledged too.
    lines.extend(line.decode() for line in (await process.stdout.read()).splitlines())
    await process.wait()
    return [line for line in lines if line.strip()]


def _pythonpath() -> list[str]:
    given = os.environ.get("PYTHONPATH")
    return [given] if given else []
