"""Durable stores side by side: eventsignal's SQLiteStore and PostgresStore vs eventsourcing's
SQLite and PostgreSQL modules, plus the raw insert rate of the same PostgreSQL as a ceiling.

Run it with::

    .venv/bin/python benchmarks/bench_stores.py [--seconds 3] [--repeats 5] [--clients 64]

Every measurement gets fresh tables (a new SQLite file, a new PostgreSQL schema in the scratch
database ``eventsignal_bench_<pid>``, dropped at the end). The peer runs with its aggregate cache
on, in its default mode (fast-forward: one extra read per command; a deep copy per command) and in
its fastest (both off). Target ratios are taken against its defaults, as the targets are stated;
the "vs peer fastest mode" ratios against the faster of the two. ``events/s`` counts what
each library stores: the peer stores one more event per cart (its creation event) than we do.

The ceiling is plain psycopg writing multi-row INSERTs of 64 rows per transaction into a table
shaped like ours, on one connection: what PostgreSQL itself accepts on this machine. Beside it,
the same rows per transaction written with COPY, PostgreSQL's fastest way in. After the SQLite
ratios at one client it prints what an event loop pays to hand a job to a thread and be woken with
the answer: at one client every command pays that once for keeping its commit's fsync off the loop,
which the peer, committing on its caller's thread, does not.

Rebuild times one cold load of a 10,000-event aggregate: a fresh ``Signal`` (so the pool misses)
or a fresh peer application (so its cache misses), on a store that already holds the history. On
PostgreSQL each load is paired with a bare psycopg read of just (version, data) of the same rows,
on an open connection: the floor a rebuild cannot go below.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
from common import (
    Clock,
    Measurement,
    Sample,
    Series,
    drive_peer,
    drive_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_ratio,
    print_table,
    run_interleaved,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from workload import CART, ItemAdded, ItemRemoved, PeerCart, PeerShop, peer_env

import eventsignal.stores
from eventsignal import Signal
from eventsignal.stores import EventStore, StoredEvent
from eventsignal.stores.postgres.schema import EVENTS_MIGRATIONS

PG_SERVER = os.environ.get("EVENTSIGNAL_BENCH_POSTGRES", "host=127.0.0.1 port=5432")
PG_USER = os.environ.get("PGUSER", "postgres")
PEER_POOL = {"POSTGRES_POOL_SIZE": "16", "POSTGRES_MAX_OVERFLOW": "16"}
HISTORY = 10_000  # events in the aggregate that the rebuild measurement loads
RAW_BATCH = 64  # rows per transaction of the ceiling: one row per command of 64 clients
RAW_LABEL = f"raw psycopg INSERT, {RAW_BATCH} rows/transaction"
COPY_LABEL = f"raw psycopg COPY, {RAW_BATCH} rows/transaction"

StoreFactory = Callable[[str], EventStore]


def our_store(name: str) -> StoreFactory | None:
    """``SQLiteStore`` or ``PostgresStore`` with migrations on, or ``None`` if not importable."""
    try:
        cls = getattr(eventsignal.stores, name)
    except (ImportError, AttributeError):
        return None
    return lambda where: cls(where, migrate=True)


# Where each measurement keeps its data.


class Scratch:
    """A scratch PostgreSQL database for this run and a temporary directory for SQLite files."""

    def __init__(self) -> None:
        self.database = f"eventsignal_bench_{os.getpid()}"
        self.directory = tempfile.TemporaryDirectory(prefix="eventsignal-bench-")
        self._names = itertools.count()
        self.postgres = True

    def __enter__(self) -> Scratch:
        try:
            with self._admin() as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        except psycopg.OperationalError as exc:
            print(f"PostgreSQL unavailable, its rows are skipped: {exc}", file=sys.stderr)
            self.postgres = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.directory.cleanup()
        if self.postgres:
            with self._admin() as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.database)
                    )
                )

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(f"{PG_SERVER} user={PG_USER} dbname=postgres", autocommit=True)

    @property
    def host(self) -> str:
        """The host of ``EVENTSIGNAL_BENCH_POSTGRES``: the peer connects there too."""
        return str(conninfo_to_dict(PG_SERVER).get("host", "127.0.0.1"))

    @property
    def port(self) -> int:
        return int(str(conninfo_to_dict(PG_SERVER).get("port", 5432)))

    def sqlite_file(self) -> str:
        return os.path.join(self.directory.name, f"events-{next(self._names)}.sqlite")

    def dsn(self, schema: str | None = None) -> str:
        dsn = f"{PG_SERVER} user={PG_USER} dbname={self.database}"
        return dsn if schema is None else f"{dsn} options='-c search_path={schema}'"

    def schema(self) -> str:
        """A new empty schema in the scratch database."""
        name = f"m{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def peer_settings(self, backend: str) -> dict[str, str]:
        if backend == "sqlite":
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.sqlite_file(),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.database,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": PG_USER,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_SCHEMA": self.schema(),
            **PEER_POOL,
        }

    def our_location(self, backend: str) -> str:
        return self.sqlite_file() if backend == "sqlite" else self.dsn(self.schema())


# Throughput.

_runs = itertools.count()


def ours(
    scratch: Scratch, backend: str, make: StoreFactory, clients: int, cache: int
) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            store = make(scratch.our_location(backend))
            async with Signal(CART, store=store, pool_size=cache) as signal:
                tag = f"run{next(_runs)}"
                await drive_signal(signal, clients=clients, seconds=warmup, tag=f"{tag}w")
                return await drive_signal(signal, clients=clients, seconds=seconds, tag=tag)

        return asyncio.run(main())

    return run


def peer(scratch: Scratch, backend: str, clients: int, cache: int, *, fast: bool) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        settings = scratch.peer_settings(backend)
        env = peer_env(cache, settings, fastforward=not fast, deepcopy=not fast)
        shop = PeerShop(env=env)
        try:
            drive_peer(shop, clients=clients, seconds=warmup)
            return drive_peer(shop, clients=clients, seconds=seconds)
        finally:
            shop.close()

    return run


BACKENDS = {"sqlite": ("SQLiteStore", "SQLite"), "postgres": ("PostgresStore", "PostgreSQL")}


def configurations(
    scratch: Scratch, backend: str, clients: int, cache: int
) -> list[tuple[str, Measurement]]:
    store_name, title = BACKENDS[backend]
    make = our_store(store_name)
    rows: list[tuple[str, Measurement]] = []
    if make is not None:
        rows.append(
            (f"eventsignal {store_name} c={clients}", ours(scratch, backend, make, clients, cache))
        )
    rows.append(
        (
            f"eventsourcing {title} c={clients} defaults",
            peer(scratch, backend, clients, cache, fast=False),
        )
    )
    rows.append(
        (
            f"eventsourcing {title} c={clients} no fast-forward, no deepcopy",
            peer(scratch, backend, clients, cache, fast=True),
        )
    )
    return rows


# The ceiling: plain psycopg into a table like ours.

# The same table definition as PostgresStore's events, so the ceiling cannot drift from it.
RAW_TABLE = next(
    statement.replace("eventsignal_events", "raw_events")
    for statement in EVENTS_MIGRATIONS[0]
    if "CREATE TABLE eventsignal_events" in statement
)


_PAYLOAD = b'{"sku":"apple","price":120}'
WriteBatch = Callable[[psycopg.Connection[Any], Iterator[int], datetime], None]


def thread_round_trip(trips: int = 2000, repeats: int = 5) -> float:
    """Microseconds for an event loop to hand a job to a waiting thread and be woken with its
    answer, with nothing done in between (median of ``repeats`` runs): what keeping a commit's
    fsync off the loop adds to each command of one client (the peer commits on its caller's
    thread). With many clients one round trip serves a whole group commit."""

    async def measure() -> float:
        loop = asyncio.get_running_loop()
        jobs: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()

        def serve() -> None:
            while (job := jobs.get()) is not None:
                loop.call_soon_threadsafe(job.set_result, None)

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        started = time.perf_counter()
        for _ in range(trips):
            job: asyncio.Future[None] = loop.create_future()
            jobs.put(job)
            await job
        elapsed = time.perf_counter() - started
        jobs.put(None)
        worker.join()
        return elapsed / trips * 1e6

    return statistics.median(asyncio.run(measure()) for _ in range(repeats))


def raw_inserts(scratch: Scratch, batch: int) -> Measurement:
    """Rows written by ``batch``-row INSERT transactions on one connection (a row counts as a
    command and an event, so its rate lines up with the events/s column)."""
    insert = (
        "INSERT INTO raw_events (event_id, aggregate_name, aggregate_id, version, name, "
        "timestamp, data, metadata) VALUES "
        + ", ".join(["(%s, 'cart', %s, %s, 'ItemAdded', %s, %s, '{}')"] * batch)
    )

    def write(conn: psycopg.Connection[Any], numbers: Iterator[int], now: datetime) -> None:
        params: list[Any] = []
        for _ in range(batch):
            params += (uuid4(), f"raw-{next(numbers)}", 1, now, _PAYLOAD)
        conn.execute(insert, params, prepare=True)

    return _raw_ceiling(scratch, batch, write)


def raw_copies(scratch: Scratch, batch: int) -> Measurement:
    """Rows written by ``batch``-row COPY transactions on one connection, the same rows as
    :func:`raw_inserts` writes."""
    copy = (
        "COPY raw_events (event_id, aggregate_name, aggregate_id, version, name, timestamp,"
        " data, metadata) FROM STDIN"
    )

    def write(conn: psycopg.Connection[Any], numbers: Iterator[int], now: datetime) -> None:
        with conn.cursor() as cursor, cursor.copy(copy) as writer:
            for _ in range(batch):
                aggregate_id = f"raw-{next(numbers)}"
                writer.write_row(
                    (uuid4(), "cart", aggregate_id, 1, "ItemAdded", now, _PAYLOAD, "{}")
                )

    return _raw_ceiling(scratch, batch, write)


def _raw_ceiling(scratch: Scratch, batch: int, write: WriteBatch) -> Measurement:
    """Commit ``batch`` rows at a time, written by ``write``, on one connection to a fresh table."""

    def run(warmup: float, seconds: float) -> Sample:
        numbers = itertools.count()
        with psycopg.connect(scratch.dsn(scratch.schema())) as conn:
            conn.execute(RAW_TABLE)
            conn.commit()

            def write_for(limit: float) -> Sample:
                rows = 0
                clock = Clock()
                deadline = time.perf_counter() + limit
                while time.perf_counter() < deadline:
                    write(conn, numbers, datetime.now(UTC))
                    conn.commit()
                    rows += batch
                return clock.sample(rows, rows)

            write_for(warmup)
            return write_for(seconds)

    return run


# Rebuild of one long aggregate.


BARE_READ = (
    "SELECT version, data FROM eventsignal_events"
    " WHERE aggregate_name = %s AND aggregate_id = %s ORDER BY version"
)


Timing = tuple[float, float]  # wall-clock seconds, CPU seconds of this process


async def bare_read_time(conn: psycopg.AsyncConnection[Any]) -> Timing:
    """One read of (version, data) of the long aggregate, rows as tuples, nothing decoded."""
    started, cpu = time.perf_counter(), time.process_time()
    cursor = await conn.execute(BARE_READ, (CART.name, "long"), binary=True)
    rows = await cursor.fetchall()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    assert len(rows) == HISTORY
    return elapsed


async def our_rebuild_times(
    make: StoreFactory, where: str, repeats: int, *, bare: bool = False
) -> tuple[list[Timing], list[Timing], list[Timing]]:
    """Cold loads of the long aggregate, with a bare read right after each (with ``bare``) and
    a load that reads whole envelopes after that.

    The cart's event handler reads only the data, and says so (``rebuild_envelopes=False``):
    its loads read just what the fold needs. The third list is the same load for a handler that
    may read the envelopes, the default. Each comes with the CPU time this process spent on it,
    which other load on the machine disturbs far less than the wall clock (the server's share
    of the work is left out of it).
    """
    store = make(where)
    async with Signal(CART, store=store) as writer:
        await store.create(CART.name, "long")
        encode = writer.serializer.encode
        now = datetime.now(UTC)
        for first in range(1, HISTORY + 1, 1000):
            chunk = []
            for version in range(first, min(first + 1000, HISTORY + 1)):
                data = ItemAdded("apple", 120) if version % 2 else ItemRemoved("apple")
                name, payload = encode(data, aggregate_id="long", version=version)
                chunk.append(
                    StoredEvent(
                        id=uuid4(),
                        aggregate_name=CART.name,
                        aggregate_id="long",
                        version=version,
                        name=name,
                        timestamp=now,
                        data=payload,
                    )
                )
            await store.append(CART.name, "long", first - 1, chunk)
        times: list[Timing] = []
        floors: list[Timing] = []
        wholes: list[Timing] = []
        envelopes = dataclasses.replace(CART, rebuild_envelopes=True)
        async with contextlib.AsyncExitStack() as stack:
            conn = None
            if bare:
                conn = await psycopg.AsyncConnection.connect(where, autocommit=True)
                await stack.enter_async_context(conn)
                await bare_read_time(conn)  # as the store's connection, already used once
            for _ in range(repeats):
                async with Signal(CART, store=store) as reader:  # fresh pool: a cold load
                    started, cpu = time.perf_counter(), time.process_time()
                    cart = await reader.aggregate("long")
                    times.append((time.perf_counter() - started, time.process_time() - cpu))
                    assert cart.version == HISTORY
                if conn is not None:
                    floors.append(await bare_read_time(conn))
                async with Signal(envelopes, store=store) as reader:
                    started, cpu = time.perf_counter(), time.process_time()
                    cart = await reader.aggregate("long")
                    wholes.append((time.perf_counter() - started, time.process_time() - cpu))
                    assert cart.version == HISTORY
    return times, floors, wholes


def peer_rebuild_times(settings: dict[str, str], repeats: int) -> list[float]:
    env = peer_env(100, settings)
    writer = PeerShop(env=env)
    cart = PeerCart.open()
    for number in range(1, HISTORY):  # the creation event is the first of HISTORY events
        if number % 2:
            cart.add("apple", 120)
        else:
            cart.remove("apple")
        if number % 1000 == 0:
            writer.save(cart)
    writer.save(cart)
    writer.close()
    times = []
    for _ in range(repeats):
        reader = PeerShop(env=env)  # fresh cache: a cold load
        started = time.perf_counter()
        loaded = reader.cart(cart.id)
        times.append(time.perf_counter() - started)
        assert loaded.version == HISTORY
        reader.close()
    return times


def rebuilds(scratch: Scratch, backend: str, repeats: int) -> None:
    store_name, title = BACKENDS[backend]
    make = our_store(store_name)
    theirs = statistics.median(peer_rebuild_times(scratch.peer_settings(backend), repeats))
    print(f"rebuild {HISTORY:,} events eventsourcing {title}: {theirs * 1000:,.1f} ms")
    mine = None
    floor_ratio = None
    if make is not None:
        where = scratch.our_location(backend)
        bare = backend == "postgres"
        times, floors, wholes = asyncio.run(our_rebuild_times(make, where, repeats, bare=bare))
        mine = statistics.median(wall for wall, _ in times)
        print(f"rebuild {HISTORY:,} events eventsignal {store_name}: {mine * 1000:,.1f} ms")
        whole = statistics.median(wall for wall, _ in wholes)
        print(
            f"rebuild {HISTORY:,} events eventsignal {store_name}, whole envelopes"
            f" (rebuild_envelopes=True): {whole * 1000:,.1f} ms"
        )
        if floors:
            floor = statistics.median(wall for wall, _ in floors)
            print(f"bare psycopg read of (version, data), same rows: {floor * 1000:,.1f} ms")
            pairs = list(zip(times, floors, strict=True))
            floor_ratio = statistics.median(t[0] / f[0] for t, f in pairs)
            cpu_ratio = statistics.median(t[1] / f[1] for t, f in pairs if f[1] > 0)
            cpu_mine = statistics.median(t[1] for t, _ in pairs)
            cpu_floor = statistics.median(f[1] for _, f in pairs)
            print(
                f"CPU time of this process: rebuild {cpu_mine * 1000:,.1f} ms,"
                f" bare read {cpu_floor * 1000:,.1f} ms"
                f" (ratio {cpu_ratio:.1f}x; the server's work is not in it)"
            )
            whole_ratio = statistics.median(
                w[0] / f[0] for w, f in zip(wholes, floors, strict=True)
            )
            print(f"ratio rebuild postgres whole envelopes to bare read: {whole_ratio:.1f}x")
    # "Times faster": their time over ours.
    print_ratio(f"rebuild {backend}", theirs / mine if mine else None, ">= 2x")
    if backend == "postgres":
        # Paired load by load: our rebuild over the bare read that followed it.
        print_ratio("rebuild postgres to bare read", floor_ratio, "<= 2.5x")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="which to run: sqlite, postgres or both"
    )
    parser.add_argument(
        "--no-rebuild", action="store_true", help="skip the rebuild of a 10,000-event aggregate"
    )
    parser.add_argument(
        "--rebuild-only",
        action="store_true",
        help="only the rebuild of a 10,000-event aggregate (no throughput tables)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv, _options)
    print_header("eventsignal durable stores vs eventsourcing (cache on)", args)
    levels = [1, args.clients] if args.clients > 1 else [1]
    with Scratch() as scratch:
        backends = [b for b in args.backends.split(",") if scratch.postgres or b != "postgres"]
        unknown = set(backends) - set(BACKENDS)
        if unknown:
            raise SystemExit(f"unknown backends {sorted(unknown)}: choose from {list(BACKENDS)}")
        tables: dict[tuple[str, int], list[Series]] = {}
        for backend in [] if args.rebuild_only else backends:
            for clients in levels:
                rows = configurations(scratch, backend, clients, args.cache)
                if backend == "postgres" and clients == levels[-1] > 1:
                    # Interleaved with the runs it is compared with, so both see the same load.
                    rows.append((RAW_LABEL, raw_inserts(scratch, RAW_BATCH)))
                    rows.append((COPY_LABEL, raw_copies(scratch, RAW_BATCH)))
                tables[backend, clients] = table = run_interleaved(rows, args)
                print_table(table)
        for backend in [] if args.no_rebuild else backends:
            rebuilds(scratch, backend, max(args.repeats, 1))
        print()
        for (backend, clients), table in tables.items():
            mine = [s for s in table if s.label.startswith("eventsignal")]
            peers = [s for s in table if s.label.startswith("eventsourcing")]
            target = ">= the peer" if clients == 1 else ">= 10x" if backend == "postgres" else ""
            # The target against the peer with its defaults (cache on); its
            # fastest mode, unsafe with several writers, is the harder comparison beside it.
            ratio = paired_ratio(mine[0], peers[:1]) if mine else None
            print_ratio(f"{backend} c={clients}", ratio, target)
            fastest = paired_ratio(mine[0], peers) if mine else None
            # SQLite's targets are set against the peer's fastest mode as well.
            hard = "" if backend != "sqlite" else ">= 1.0x" if clients == 1 else ">= 10x"
            print_ratio(f"{backend} c={clients} vs peer fastest mode", fastest, hard)
            if backend == "sqlite" and clients == 1:
                print(
                    f"event loop to a thread and back: {thread_round_trip():.0f} us per round"
                    " trip (one per command at c=1, beside the commit itself)"
                )
            raw = [s for s in table if s.label == RAW_LABEL]
            copied = [s for s in table if s.label == COPY_LABEL]
            if raw:
                print(
                    f"raw psycopg multi-row INSERT, {RAW_BATCH} rows per transaction: "
                    f"{raw[0].events_per_second:,.0f} rows/s"
                )
                share = paired_ratio(mine[0], raw, lambda s: s.events_per_second) if mine else 0
                shown = f"{share:.0%}" if share else "n/a"
                print(
                    f"ratio postgres c={clients} events/s to raw INSERT ceiling: {shown}"
                    "  (target >= 85%)"
                )
            if copied:
                print(
                    f"raw psycopg COPY, {RAW_BATCH} rows per transaction: "
                    f"{copied[0].events_per_second:,.0f} rows/s"
                )
                share = paired_ratio(mine[0], copied, lambda s: s.events_per_second) if mine else 0
                shown = f"{share:.0%}" if share else "n/a"
                print(f"ratio postgres c={clients} events/s to raw COPY ceiling: {shown}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
