"""Cold rebuild of one aggregate, from its events alone and from a snapshot plus the tail.

Run it with::

    .venv/bin/python benchmarks/bench_snapshots.py [--sizes 1000 10000 100000] [--repeats 5]

For each store (SQLite file, PostgreSQL scratch database) and each history length it writes one
aggregate, then times a fresh ``Signal`` bringing it into the pool (so the pool always misses):
once with snapshots off (every event is read and applied) and once with a snapshot taken every
1,000 events (the snapshot and at most 999 tail events). The second column must stay flat as the
history grows; the first grows with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bench_stores import Scratch, StoreFactory, our_store

from eventsignal import AggregateConfig, Event, Signal
from eventsignal.domain.snapshots import SnapshotPolicy


@dataclass(frozen=True)
class Meter:
    total: int = 0
    readings: int = 0


@dataclass(frozen=True)
class Record:
    amount: int
    times: int


@dataclass(frozen=True)
class Recorded:
    amount: int


def handle(command: Record, meter: Meter) -> list[Recorded]:
    return [Recorded(command.amount)] * command.times


def apply(meter: Meter, event: Event[Recorded]) -> Meter:
    return Meter(meter.total + event.data.amount, meter.readings + 1)


PLAIN = AggregateConfig(
    name="meter",
    initial_state=Meter(),
    command_handler=handle,
    event_handler=apply,
    events=[Recorded],
)
SNAPSHOTTED = replace(PLAIN, snapshots=SnapshotPolicy(every=1000))
BATCH = 1000  # events per command while writing the history


async def write(make: StoreFactory, where: str, size: int) -> None:
    async with Signal(SNAPSHOTTED, store=make(where), telemetry=None) as signal:
        await signal.create("m")
        for _ in range(size // BATCH):
            await signal.handle_command("m", Record(1, BATCH))
        if size % BATCH:
            await signal.handle_command("m", Record(1, size % BATCH))
        await signal.drain()


async def rebuild(make: StoreFactory, where: str, config: AggregateConfig[Meter, Record]) -> float:
    async with Signal(config, store=make(where), telemetry=None) as signal:
        started = time.perf_counter()
        meter = await signal.aggregate("m")
        elapsed = time.perf_counter() - started
        if meter.state.readings != meter.version:
            raise AssertionError("rebuilt state does not match its version")
        return elapsed


async def measure(backend: str, where: str, size: int, repeats: int) -> tuple[float, float]:
    make = our_store("SQLiteStore" if backend == "sqlite" else "PostgresStore")
    assert make is not None
    await write(make, where, size)
    plain = [await rebuild(make, where, PLAIN) for _ in range(repeats)]
    snapshotted = [await rebuild(make, where, SNAPSHOTTED) for _ in range(repeats)]
    return statistics.median(plain), statistics.median(snapshotted)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [1_000, 3_000], 1
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; median of {args.repeats}")
    print(f"{'store':<10} {'events':>8} {'events only':>14} {'snapshot+tail':>14} {'speed-up':>9}")
    with Scratch() as scratch:
        backends = ["sqlite"] + (["postgres"] if scratch.postgres else [])
        for backend in backends:
            for size in args.sizes:
                where = scratch.our_location(backend)
                plain, snap = asyncio.run(measure(backend, where, size, args.repeats))
                print(
                    f"{backend:<10} {size:>8,} {plain * 1000:>11.1f} ms {snap * 1000:>11.1f} ms "
                    f"{plain / snap:>8.1f}x"
                )


if __name__ == "__main__":
    main()
