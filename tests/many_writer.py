"""One of several OS processes sending commands to the same aggregates through one shared store.

Usage::

    python tests/many_writer.py --store {sqlite,postgres,nats} --target T --worker K
        [--commands 250] [--shared 100] [--private 0] [--hot-share 1.0] [--concurrency 8]

``--target`` is the SQLite file, the PostgreSQL DSN or a NATS URL naming the stream
(``nats://host:port?stream=name``). The worker creates the
``--shared`` aggregates ``shared-0 ...`` (every worker tries; the store lets exactly one win) and
its own ``--private`` ones, prints ``ready``, and waits for a line on stdin so that all workers
start together. It then sends ``--commands`` commands, a ``--hot-share`` of them to the shared
aggregates and the rest to its private ones, ``--concurrency`` at a time, and prints one JSON
line: the commands acknowledged (``[aggregate id, command number, events]``), the ones that
failed, the conflicts the engine resolved, the live state and version of every aggregate in its
pool, and the seconds the commands took.

The domain is a tally whose ``trail`` hashes every event in order, so a live state that missed
or reordered an event cannot equal the state rebuilt from the store.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass

from eventsignal import AggregateConfig, AggregateExists, Event, Signal, SignalError
from eventsignal.stores import EventStore
from eventsignal.telemetry import CommandConflicted, Telemetry


@dataclass(frozen=True)
class Tally:
    count: int = 0
    total: int = 0
    trail: str = ""


@dataclass(frozen=True)
class Add:
    worker: int
    number: int
    events: int


@dataclass(frozen=True)
class Added:
    worker: int
    number: int
    part: int


def handle(command: Add, tally: Tally) -> list[Added]:
    return [Added(command.worker, command.number, part) for part in range(command.events)]


def apply(tally: Tally, event: Event[Added]) -> Tally:
    added = event.data
    step = f"{tally.trail}|{added.worker}:{added.number}:{added.part}".encode()
    return Tally(
        tally.count + 1,
        tally.total + added.number,
        hashlib.blake2b(step, digest_size=8).hexdigest(),
    )


def config() -> AggregateConfig[Tally, Add]:
    return AggregateConfig(
        name="tally",
        initial_state=Tally(),
        command_handler=handle,
        event_handler=apply,
        events=[Added],
    )


def open_store(kind: str, target: str) -> EventStore:
    if kind == "sqlite":
        from eventsignal.stores import SQLiteStore

        return SQLiteStore(target, busy_timeout=30.0)
    if kind == "postgres":
        from eventsignal.stores import PostgresStore

        return PostgresStore(target, max_size=2)
    if kind == "nats":
        from eventsignal.stores.urls import open_store as open_url

        return open_url(target)
    raise ValueError(f"unknown store {kind!r}")


async def main(args: argparse.Namespace) -> None:
    conflicts = 0

    def count_conflicts(report: Telemetry) -> None:
        nonlocal conflicts
        if isinstance(report, CommandConflicted):
            conflicts += 1

    shared = [f"shared-{n}" for n in range(args.shared)]
    private = [f"w{args.worker}-{n}" for n in range(args.private)]
    store = open_store(args.store, args.target)
    signal = Signal(
        config(),
        store=store,
        pool_size=len(shared) + len(private) + 10,
        telemetry=count_conflicts,
        conflict_retries=1000,
    )
    async with signal:
        for aggregate_id in shared + private:
            try:
                await signal.create(aggregate_id)
            except AggregateExists:
                await signal.aggregate(aggregate_id)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        rng = random.Random(args.worker)
        plan: list[tuple[str, Add]] = []
        for number in range(1, args.commands + 1):
            hot = not private or rng.random() < args.hot_share
            aggregate_id = rng.choice(shared if hot else private)
            plan.append((aggregate_id, Add(args.worker, number, 1 + number % 2)))
        acked: list[tuple[str, int, int]] = []
        failed: list[tuple[str, int, str]] = []
        queue = iter(plan)

        async def client() -> None:
            for aggregate_id, command in queue:
                try:
                    await signal.handle_command(aggregate_id, command)
                except SignalError as exc:
                    failed.append((aggregate_id, command.number, repr(exc)))
                else:
                    acked.append((aggregate_id, command.number, command.events))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - started
        live = {}
        for aggregate_id in shared + private:
            handle_ = await signal.aggregate(aggregate_id)
            state = handle_.state
            live[aggregate_id] = [handle_.version, state.count, state.total, state.trail]
        report = {
            "worker": args.worker,
            "acked": acked,
            "failed": failed,
            "conflicts": conflicts,
            "live": live,
            "seconds": seconds,
        }
        print(json.dumps(report), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, choices=["sqlite", "postgres", "nats"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--commands", type=int, default=250)
    parser.add_argument("--shared", type=int, default=100)
    parser.add_argument("--private", type=int, default=0)
    parser.add_argument("--hot-share", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
