"""Several OS processes on one store: how throughput degrades as they contend for aggregates.

Run it with::

    .venv/bin/python benchmarks/bench_contention.py [--stores sqlite,postgres,nats]
        [--processes 1,2,4] [--hot 0,0.1,0.5,1] [--commands 2000] [--repeats 3]

Each process is ``tests/many_writer.py`` (the same writer the multi-process test runs): its own
``Signal`` with 8 commands in flight, its own 50 private aggregates, and 10 hot aggregates shared
by all processes. ``--hot`` is the share of commands sent to the shared ones. A process whose live
copy of a hot aggregate is stale learns it from the store on append, catches up and retries; the
``conflicts`` column counts those retries per command. Processes start together (they wait on
stdin until all are ready); throughput is all acknowledged commands over the slowest process's
time. Every run gets a fresh store: a new SQLite file, a new PostgreSQL schema in the database
``test``, a new JetStream stream; the median of ``--repeats`` runs is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from uuid import uuid4

WRITER = Path(__file__).resolve().parent.parent / "tests" / "many_writer.py"
PG_ADMIN = os.environ.get(
    "EVENTSIGNAL_BENCH_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres"
)
SHARED = 10
PRIVATE = 50


class Fresh:
    """A fresh, migrated store of one kind: the target string the writers open, and clean-up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.target = ""
        self._cleanup: list[Any] = []

    async def __aenter__(self) -> str:
        name = f"bench_{uuid4().hex[:12]}"
        if self.kind == "sqlite":
            from eventsignal.stores import SQLiteStore

            folder = tempfile.TemporaryDirectory()
            self._cleanup.append(folder.cleanup)
            self.target = str(Path(folder.name) / "contention.db")
            store: Any = SQLiteStore(self.target, migrate=True)
        elif self.kind == "postgres":
            import psycopg
            from psycopg.conninfo import make_conninfo

            from eventsignal.stores import PostgresStore

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {name}")
            self._cleanup.append(lambda: _drop_schema(name))
            self.target = make_conninfo(PG_ADMIN, options=f"-c search_path={name}")
            store = PostgresStore(self.target, migrate=True, max_size=1)
        else:
            from eventsignal.stores import NatsStore

            store = NatsStore(stream=name)
            self.target = f"{store.servers[0]}?stream={name}"
            self._cleanup.append(lambda: asyncio.run(_delete_stream(name)))
        await store.open()
        await store.close()
        return self.target

    async def __aexit__(self, *_: object) -> None:
        for cleanup in reversed(self._cleanup):
            await asyncio.get_running_loop().run_in_executor(None, cleanup)


def _drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def _delete_stream(name: str) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def run_once(kind: str, processes: int, hot: float, commands: int) -> tuple[float, float]:
    """(commands per second, conflicts per command) of one run on a fresh store."""
    async with Fresh(kind) as target:
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WRITER),
                *("--store", kind, "--target", target, "--worker", str(worker)),
                *("--commands", str(commands), "--shared", str(SHARED)),
                *("--private", str(PRIVATE), "--hot-share", str(hot)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for worker in range(processes)
        ]
        for writer in writers:
            assert writer.stdout is not None
            ready = await writer.stdout.readline()
            if ready.strip() != b"ready":
                raise RuntimeError(f"writer did not start: {ready!r}")
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
            await writer.stdin.drain()
        reports = [json.loads((await writer.communicate())[0]) for writer in writers]
    acked = sum(len(r["acked"]) for r in reports)
    failed = sum(len(r["failed"]) for r in reports)
    if failed:
        raise RuntimeError(f"{failed} commands failed: {reports[0]['failed'][:3]}")
    slowest = max(r["seconds"] for r in reports)
    return acked / slowest, sum(r["conflicts"] for r in reports) / acked


async def main(args: argparse.Namespace) -> None:
    stores = args.stores.split(",")
    counts = [int(p) for p in args.processes.split(",")]
    shares = [float(h) for h in args.hot.split(",")]
    print(
        f"{args.commands} commands per process, 8 in flight each, {PRIVATE} private aggregates "
        f"per process, {SHARED} shared hot ones; median of {args.repeats} runs; "
        f"{os.cpu_count()} cores (shared with other work)"
    )
    versus = f"vs {shares[0]:.0%} hot"
    print(f"{'store':<9}{'procs':>6}{'hot':>6}{'commands/s':>12}{versus:>11}{'conflicts':>11}")
    for kind in stores:
        for processes in counts:
            # Repeats interleave the hot shares (in a rotating order), so that load from other
            # work on the machine spreads over all of them instead of skewing one.
            runs: dict[float, list[tuple[float, float]]] = {hot: [] for hot in shares}
            for repeat in range(args.repeats):
                turn = repeat % len(shares)
                for hot in shares[turn:] + shares[:turn]:
                    runs[hot].append(await run_once(kind, processes, hot, args.commands))
            baseline = statistics.median(r[0] for r in runs[shares[0]])
            for hot in shares:
                rate = statistics.median(r[0] for r in runs[hot])
                conflicts = statistics.median(r[1] for r in runs[hot])
                print(
                    f"{kind:<9}{processes:>6}{hot:>6.0%}{rate:>12,.0f}"
                    f"{rate / baseline:>11.2f}{conflicts:>11.2f}",
                    flush=True,
                )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres,nats")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--hot", default="0,0.1,0.5,1")
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
