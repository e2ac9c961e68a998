"""What personal fields cost a command, on MemoryStore and SQLiteStore.

The same command and event shape twice, measured round robin in the same run::

    .venv/bin/python benchmarks/bench_privacy.py [--seconds 3] [--repeats 5] [--clients 64]

"plain" declares no personal fields; "personal" declares two, so each event is sealed under
its subject's data key (one subject per aggregate, its key made by the aggregate's first
command). ``clients`` aggregates take turns, one command at a time each. The ratio is the
personal rate over the plain rate of the same round, per CPU second of this process (robust to
other work on the machine) and wall-clock; events with personal fields pay for AES-GCM and a
second JSON pass, so no ceiling is set, the figure is reported.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from common import parse_args, print_header

from eventsignal import AggregateConfig, Signal
from eventsignal.privacy import Personal
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore


@dataclass
class Plain:
    customer_id: str
    email: str
    note: str


@dataclass
class Sealed:
    customer_id: str
    email: Annotated[str, Personal(subject="customer_id")]
    note: Annotated[str, Personal(subject="customer_id")]


@dataclass
class Update:
    n: int


def config(event: type[Any]) -> AggregateConfig[Any, Any]:
    def handle(command: Update, state: int) -> list[Any]:
        return [event(customer_id="x", email=f"user{command.n}@example.org", note="a note")]

    return AggregateConfig(
        "customer", 0, handle, lambda state, e: state + 1, events={"Changed": event}
    )


async def measure(kind: str, event: type[Any], clients: int, seconds: float) -> tuple[float, float]:
    """Commands per wall-clock second and per CPU second."""
    with tempfile.TemporaryDirectory() as folder:
        store: EventStore = MemoryStore()
        if kind == "sqlite":
            store = SQLiteStore(Path(folder) / "bench.db", migrate=True)
        async with Signal(config(event), store=store, telemetry=None) as signal:
            ids = [f"c{i}" for i in range(clients)]
            for aggregate_id in ids:
                await signal.create(aggregate_id, Update(0))
            done = 0
            wall, cpu = time.perf_counter(), time.process_time()
            stop = wall + seconds

            async def client(aggregate_id: str) -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    await signal.handle_command(aggregate_id, Update(done))
                    done += 1

            await asyncio.gather(*(client(i) for i in ids))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return done / wall, done / max(cpu, 1e-9)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    print_header("eventsignal with and without personal fields", args)
    for kind in ("memory", "sqlite"):
        ratios_wall: list[float] = []
        ratios_cpu: list[float] = []
        for _ in range(args.repeats):
            plain = asyncio.run(measure(kind, Plain, args.clients, args.seconds))
            sealed = asyncio.run(measure(kind, Sealed, args.clients, args.seconds))
            print(
                f"  {kind} c={args.clients}: plain {plain[0]:,.0f}/s, personal {sealed[0]:,.0f}/s",
                flush=True,
            )
            ratios_wall.append(sealed[0] / plain[0])
            ratios_cpu.append(sealed[1] / plain[1])
        print(
            f"ratio {kind} personal / plain: {statistics.median(ratios_cpu):.3f}x per CPU "
            f"second, {statistics.median(ratios_wall):.3f}x wall-clock"
        )


if __name__ == "__main__":
    main()
