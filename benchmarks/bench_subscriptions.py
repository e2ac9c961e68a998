"""Subscription speed: catch-up over N stored events, and live latency from append to handler.

    python benchmarks/bench_subscriptions.py              # N = 1,000,000, SQLite and PostgreSQL
    python benchmarks/bench_subscriptions.py --quick      # N = 20,000, a smoke run
    python benchmarks/bench_subscriptions.py --events 200000 --backend postgres

Catch-up runs a durable subscription with a trivial handler (it counts) from position 0 until it
has passed every stored event: events read, decoded into envelopes, handed over, checkpointed.
``--handler readmodel`` runs an exactly-once projection instead (one document write per event).
Live latency appends one event at a time to a subscription that has caught up and measures the
time from calling ``append`` to the handler receiving the event. Targets: catch-up >= 100,000
events/s on PostgreSQL with the trivial handler; p99 live latency < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import msgspec

from eventsignal import AggregateConfig, Event
from eventsignal.stores import EventStore, StoredEvent
from eventsignal.subscriptions import (
    ReadModel,
    Subscription,
    SubscriptionRunner,
    Transaction,
    wait_until_processed,
)

PG_SERVER = os.environ.get("EVENTSIGNAL_BENCH_POSTGRES", "host=127.0.0.1 port=5432 user=postgres")
EVENTS_PER_AGGREGATE = 100
EVENTS_PER_APPEND = 10
WRITERS = 64


class Counted(msgspec.Struct, frozen=True):
    amount: int


config: AggregateConfig[int, Any] = AggregateConfig(
    name="meter",
    initial_state=0,
    command_handler=lambda command, state: [],
    event_handler=lambda state, event: state,
    events=[Counted],
)


async def fill(store: EventStore, total: int, per_append: int = EVENTS_PER_APPEND) -> None:
    """``total`` events over aggregates of 100, ``per_append`` events per append, appended by
    concurrent writers (group commit)."""
    payload = msgspec.json.encode(Counted(1))
    now = datetime.now(UTC)
    aggregates = [f"m-{n}" for n in range(max(total // EVENTS_PER_AGGREGATE, 1))]
    per_aggregate = min(total, EVENTS_PER_AGGREGATE)

    async def write(ids: list[str]) -> None:
        for aggregate_id in ids:
            await store.create("meter", aggregate_id)
            for start in range(0, per_aggregate, per_append):
                count = min(per_append, per_aggregate - start)
                events = [
                    StoredEvent(
                        id=uuid4(),
                        aggregate_name="meter",
                        aggregate_id=aggregate_id,
                        version=start + i,
                        name="Counted",
                        timestamp=now,
                        data=payload,
                    )
                    for i in range(1, count + 1)
                ]
                await store.append("meter", aggregate_id, start, events)

    await asyncio.gather(*(write(aggregates[w::WRITERS]) for w in range(WRITERS)))


documents: ReadModel[dict[str, int]] = ReadModel("bench_meters", dict[str, int])


def subscription(name: str, handler_kind: str, counter: list[int], batch: int) -> Subscription:
    if handler_kind == "readmodel":

        async def project(event: Event[Counted], tx: Transaction) -> None:
            await documents.put(tx, event.aggregate_id, {"v": event.version}, event.position)

        return Subscription(
            name=name, handler=project, configs=[config], read_models=[documents], batch_size=batch
        )

    def count(event: Event[Counted]) -> None:
        counter[0] += 1

    return Subscription(name=name, handler=count, configs=[config], batch_size=batch)


async def catch_up(
    make: Callable[[], EventStore], handler_kind: str, batch: int
) -> tuple[float, float]:
    """Events per second of wall time, and per second of this process's CPU time."""
    store = make()
    await store.open()
    try:
        head = await store.head_position()
        counter = [0]
        started = time.perf_counter()
        cpu = time.process_time()
        async with SubscriptionRunner(
            subscription(f"catchup-{uuid4().hex[:6]}", handler_kind, counter, batch), store
        ) as runner:
            await wait_until_processed(store, runner.subscription.name, head, timeout=3600)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if handler_kind == "trivial":
            assert counter[0] == head, (counter[0], head)
        return head / elapsed, head / cpu
    finally:
        await store.close()


async def live_latency(make: Callable[[], EventStore], samples: int) -> tuple[float, float]:
    store = make()
    await store.open()
    received: dict[int, float] = {}
    arrived = asyncio.Event()

    def note(event: Event[Counted]) -> None:
        received[event.version] = time.perf_counter()
        arrived.set()

    follower = Subscription(
        name=f"live-{uuid4().hex[:6]}", handler=note, configs=[config], start="end"
    )
    payload = msgspec.json.encode(Counted(1))
    latencies: list[float] = []
    try:
        await store.create("meter", "live")
        async with SubscriptionRunner(follower, store):
            await asyncio.sleep(0.2)  # let it lease its partition
            for version in range(1, samples + 1):
                arrived.clear()
                event = StoredEvent(
                    id=uuid4(),
                    aggregate_name="meter",
                    aggregate_id="live",
                    version=version,
                    name="Counted",
                    timestamp=datetime.now(UTC),
                    data=payload,
                )
                sent = time.perf_counter()
                await store.append("meter", "live", version - 1, [event])
                async with asyncio.timeout(10):
                    while version not in received:
                        await arrived.wait()
                        arrived.clear()
                latencies.append(received[version] - sent)
                await asyncio.sleep(0.002)
    finally:
        await store.close()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def postgres_scratch() -> tuple[str, Callable[[], None]]:
    import psycopg
    from psycopg import sql

    name = f"eventsignal_bench_subs_{os.getpid()}"
    with psycopg.connect(f"{PG_SERVER} dbname=postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(f"{PG_SERVER} dbname=postgres", autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    return f"{PG_SERVER} dbname={name}", drop


async def run_backend(backend: str, args: argparse.Namespace) -> None:
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    folder = tempfile.TemporaryDirectory(prefix="eventsignal-bench-subs-")
    if backend == "sqlite":
        from eventsignal.stores import SQLiteStore

        path = os.path.join(folder.name, "events.db")

        def make() -> EventStore:
            return SQLiteStore(path, migrate=True)
    else:
        from eventsignal.stores import PostgresStore

        dsn, cleanup = postgres_scratch()

        def make() -> EventStore:
            return PostgresStore(dsn, migrate=True, max_size=4)

    try:
        store = make()
        await store.open()
        started = time.perf_counter()
        await fill(store, args.events)
        filled = time.perf_counter() - started
        await store.close()
        print(f"{backend}: stored {args.events:,} events in {filled:.1f} s", flush=True)
        runs = [await catch_up(make, args.handler, args.batch) for _ in range(args.repeats)]
        rates = [wall for wall, _ in runs]
        print(
            f"{backend}: catch-up ({args.handler} handler) "
            f"{statistics.median(rates):,.0f} events/s "
            f"(median of {len(rates)}: {', '.join(f'{r:,.0f}' for r in rates)}; "
            f"{statistics.median(c for _, c in runs):,.0f} events per CPU-second of this process)",
            flush=True,
        )
        median, p99 = await live_latency(make, args.samples)
        print(
            f"{backend}: live latency append->handler median {median * 1000:.2f} ms, "
            f"p99 {p99 * 1000:.2f} ms over {args.samples} events",
            flush=True,
        )
    finally:
        folder.cleanup()
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 100 latency samples")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--handler", choices=["trivial", "readmodel"], default="trivial")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000, help="events per read and checkpoint")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.events, args.samples, args.repeats = 20_000, 100, 1
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores (shared with other work: "
        "figures are indicative)",
        flush=True,
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(run_backend(backend, args))


if __name__ == "__main__":
    main()
