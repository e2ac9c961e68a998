"""Profile eventsignal's command path on the cart workload, to find what a command costs.

::

    .venv/bin/python benchmarks/profile_commands.py [--store memory|sqlite|postgres]
        [--clients 1] [--seconds 3] [--no-telemetry] [--sort tottime] [--top 30]

Runs the same clients as the benchmarks under :mod:`cProfile` after a short warm-up and prints
the costliest functions. Profiling slows Python code down several times, unevenly, so read the
shares, not the absolute rates. PostgreSQL runs use a scratch database that is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import tempfile
from collections.abc import Iterator

import psycopg
from bench_stores import StoreFactory, our_store
from common import drive_signal
from psycopg import sql
from workload import CART

from eventsignal import Signal
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.telemetry import log_telemetry

SERVER = "host=127.0.0.1 port=5432 user=" + os.environ.get("PGUSER", "postgres")


def store_class(name: str) -> StoreFactory:
    make = our_store(name)
    if make is None:
        raise SystemExit(f"eventsignal.stores.{name} is not available")
    return make


@contextlib.contextmanager
def make_store(kind: str) -> Iterator[EventStore]:
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="eventsignal-profile-") as directory:
            yield store_class("SQLiteStore")(os.path.join(directory, "events.sqlite"))
    else:
        database = sql.Identifier(f"eventsignal_profile_{os.getpid()}")
        with psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(database))
        try:
            yield store_class("PostgresStore")(f"{SERVER} dbname=eventsignal_profile_{os.getpid()}")
        finally:
            with psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))


async def profile(store: EventStore, args: argparse.Namespace) -> None:
    hook = None if args.no_telemetry else log_telemetry
    async with Signal(CART, store=store, pool_size=args.cache, telemetry=hook) as signal:
        await drive_signal(signal, clients=args.clients, seconds=0.5, tag="warm")
        profiler = cProfile.Profile()
        profiler.enable()
        sample = await drive_signal(signal, clients=args.clients, seconds=args.seconds, tag="run")
        profiler.disable()
    print(
        f"{args.store} c={args.clients}: {sample.commands:,} commands, "
        f"{sample.commands_per_second:,.0f}/s under the profiler"
    )
    pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["memory", "sqlite", "postgres"], default="memory")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cache", type=int, default=1000)
    parser.add_argument("--no-telemetry", action="store_true")
    parser.add_argument("--sort", default="tottime", help="a pstats sort key, e.g. cumulative")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    with make_store(args.store) as store:
        asyncio.run(profile(store, args))


if __name__ == "__main__":
    main()
