"""The server's share of a PostgreSQL group commit: backend CPU per 64-request batch of
``eventsignal_append`` against the raw multi-row INSERT of the ceiling in ``bench_stores.py``.

Run it with::

    .venv/bin/python benchmarks/bench_append_server.py [--batches 1000]

Both are fed batches built beforehand (carts: one creation then four appends each, 64 carts at a
time), each on its own connection, in interleaved chunks, so this process does next to nothing
and what is compared is the server's work: the CPU time of each connection's backend, read from
``/proc/<pid>/schedstat`` (Linux, server on this machine), which other load disturbs far less
than the wall clock. A command costs the server one more row write than the ceiling's row: its
aggregate's version in ``eventsignal_aggregates``, which optimistic concurrency checks.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
from bench_stores import _PAYLOAD, RAW_BATCH, RAW_TABLE, Scratch
from common import parse_args

from eventsignal.domain.events import new_event_id
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.postgres.arrays import batch_arrays, register_dumpers
from eventsignal.stores.postgres.schema import EVENTS_MIGRATIONS
from eventsignal.stores.sql.batching import AppendRequest

APPEND = (
    "SELECT outcomes, positions FROM eventsignal_append(%b, %b, %b::text[], %b::text[],"
    " %b::int4[], %b::int4[], %b::bool[], %b::int4[], %b::uuid[], %b::int4[], %b::text[],"
    " %b::timestamptz[], %b::bytea[], %b::text[])"
)
INSERT = (
    "INSERT INTO raw_events (event_id, aggregate_name, aggregate_id, version, name, "
    "timestamp, data, metadata) VALUES "
    + ", ".join(["(%s, 'cart', %s, %s, 'ItemAdded', %s, %s, '{}')"] * RAW_BATCH)
)


def backend_cpu(pid: int) -> float | None:
    """Seconds of CPU the backend ``pid`` has used, or ``None`` where that cannot be read."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def append_batches(count: int) -> list[list[Any]]:
    """``count`` batches of 64 cart requests as ``eventsignal_append``'s arrays; the first 5
    open every cart, so that all later ones find their carts at the version they expect."""
    now = datetime.now(UTC)
    versions = [0] * RAW_BATCH
    carts = [""] * RAW_BATCH
    numbers = itertools.count()
    batches: list[list[Any]] = []
    for _ in range(count + 5):
        requests = []
        for k in range(RAW_BATCH):
            version = versions[k]
            if version == 0:
                carts[k] = f"cart-{next(numbers)}"
            event = StoredEvent(
                id=new_event_id(),
                aggregate_name="cart",
                aggregate_id=carts[k],
                version=version + 1,
                name="ItemAdded",
                timestamp=now,
                data=_PAYLOAD,
            )
            requests.append(AppendRequest("cart", carts[k], version, [event], create=version == 0))
            # Staggered: carts of one batch are at every step of their five commands.
            versions[k] = (version + 1) % 5 if len(batches) >= k % 5 else 0
        batches.append([1, "channel", *batch_arrays(requests, lambda m: b"{}")])
    return batches


def insert_batches(count: int) -> list[list[Any]]:
    now = datetime.now(UTC)
    numbers = itertools.count()
    batches: list[list[Any]] = []
    for _ in range(count):
        params: list[Any] = []
        for _ in range(RAW_BATCH):
            params += (uuid4(), f"raw-{next(numbers)}", 1, now, _PAYLOAD)
        batches.append(params)
    return batches


Call = Callable[[Sequence[Any]], None]


def measure(batches: int, chunks: int) -> tuple[list[float], list[float]] | None:
    """Backend CPU (ms) per batch, chunk by chunk: the appends', then the inserts'."""
    with Scratch() as scratch, contextlib.ExitStack() as stack:
        ours = stack.enter_context(psycopg.connect(scratch.dsn(scratch.schema()), autocommit=True))
        register_dumpers(ours.adapters)
        ours.execute("SET TIME ZONE 'UTC'")
        for migration in EVENTS_MIGRATIONS:
            for statement in migration:
                ours.execute(statement.encode())
        raw = stack.enter_context(psycopg.connect(scratch.dsn(scratch.schema())))
        raw.execute(RAW_TABLE)
        raw.commit()

        def append(params: Sequence[Any]) -> None:
            row = ours.execute(APPEND, params, prepare=True).fetchone()
            assert row is not None
            assert set(row[0]) == {-1}, "every request must be accepted"

        def insert(params: Sequence[Any]) -> None:
            raw.execute(INSERT, params, prepare=True)
            raw.commit()

        prepared = append_batches(batches)
        for params in prepared[:5]:
            append(params)
        sides: list[tuple[Call, list[list[Any]], int]] = [
            (append, prepared[5:], _pid(ours)),
            (insert, insert_batches(batches), _pid(raw)),
        ]
        costs: tuple[list[float], list[float]] = ([], [])
        size = max(batches // chunks, 1)
        for start in range(0, batches - size + 1, size):
            for (call, params, pid), cost in zip(sides, costs, strict=True):
                before = backend_cpu(pid)
                for one in params[start : start + size]:
                    call(one)
                after = backend_cpu(pid)
                if before is None or after is None:
                    return None
                cost.append((after - before) / size * 1000)
        return costs


def _pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=int, default=1000, help="batches on each side")
    parser.add_argument("--chunks", type=int, default=20, help="interleaved chunks")


def main() -> None:
    args = parse_args(__doc__ or "", None, _options)
    if args.quick:
        args.batches, args.chunks = 40, 4
    load = os.getloadavg()
    print("# backend CPU per group commit of 64 requests vs the raw INSERT ceiling")
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.batches} batches a side in "
        f"{args.chunks} interleaved chunks"
    )
    started = time.perf_counter()
    costs = measure(args.batches, args.chunks)
    if costs is None:
        print("backend CPU time cannot be read here (/proc/<pid>/schedstat): n/a")
        return
    append, insert = (statistics.median(cost) for cost in costs)
    print(f"eventsignal_append, {RAW_BATCH} requests: {append:.2f} ms of backend CPU per batch")
    print(f"raw INSERT, {RAW_BATCH} rows: {insert:.2f} ms of backend CPU per batch")
    ratio = statistics.median(a / i for a, i in zip(*costs, strict=True) if i > 0)
    print(f"ratio append to INSERT, backend CPU: {ratio:.1f}x  (chunks paired)")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
