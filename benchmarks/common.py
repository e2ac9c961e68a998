"""Drivers, timing and reporting shared by the side-by-side benchmarks.

Both libraries run the same cart plan (see :mod:`workload`). Our clients are asyncio tasks on one
event loop; the peer's clients are threads, which is how its synchronous API serves concurrent
callers. A measurement runs every client until a deadline, then counts finished carts only, so a
client never stops halfway through a cart. Repeats are interleaved across configurations so that
noise from other work on the machine spreads over all of them, and we report medians.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workload import COMMANDS_PER_CART, EVENTS_PER_CART, PeerShop, run_cart, run_peer_cart

from eventsignal import Signal
from eventsignal.stores import EventStore

CLIENT_STRIDE = 1_000_000  # cart numbers of client k start at k * CLIENT_STRIDE


@dataclass(frozen=True)
class Sample:
    """One timed run: how many commands and events completed, in wall-clock and CPU seconds.

    CPU seconds are this process's (all its threads): on a machine shared with other work they
    show what the library itself costs, where wall-clock time also counts waiting for a core.
    """

    commands: int
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def commands_per_second(self) -> float:
        return self.commands / self.seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def commands_per_cpu_second(self) -> float:
        return self.commands / max(self.cpu_seconds, 1e-9)


class Clock:
    """Wall-clock and process CPU time since it was made."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def sample(self, commands: int, events: int) -> Sample:
        return Sample(
            commands,
            events,
            time.perf_counter() - self.wall,
            time.process_time() - self.cpu,
        )


@dataclass
class Series:
    """The repeated samples of one configuration."""

    label: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def commands_per_second(self) -> float:
        return statistics.median(s.commands_per_second for s in self.samples)

    @property
    def events_per_second(self) -> float:
        return statistics.median(s.events_per_second for s in self.samples)

    @property
    def commands_per_cpu_second(self) -> float:
        return statistics.median(s.commands_per_cpu_second for s in self.samples)

    @property
    def spread(self) -> str:
        """Lowest and highest rate, to show how noisy the machine was."""
        rates = [s.commands_per_second for s in self.samples]
        return f"{min(rates):,.0f}..{max(rates):,.0f}"


Rate = Callable[[Sample], float]


def paired_ratio(
    ours: Series, peers: Sequence[Series], rate: Rate = lambda s: s.commands_per_second
) -> float:
    """Median over repeat rounds of our rate over the best peer rate of the same round.

    Measurements of one round run back to back, so pairing them cancels most of the drift in
    load from other work on the machine; taking the best peer per round errs in its favour.
    """
    return statistics.median(
        rate(mine) / max(rate(p.samples[i]) for p in peers) for i, mine in enumerate(ours.samples)
    )


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], object] | None = None,
) -> argparse.Namespace:
    """The options every benchmark takes; ``extra`` adds a script's own."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up before each one")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per configuration")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--cache", type=int, default=1000, help="pool / aggregate cache size")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run that only checks the script works"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.repeats = 0.2, 0.05, 1
    return args


def print_header(title: str, args: argparse.Namespace) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(f"# {title}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{args.seconds:g} s per measurement after {args.warmup:g} s warm-up, "
        f"median of {args.repeats}; {COMMANDS_PER_CART} commands per cart; "
        f"pool/cache size {args.cache}"
    )
    print()


def print_table(rows: Sequence[Series]) -> None:
    width = max(len(r.label) for r in rows)
    print(
        f"{'configuration':<{width}}  {'commands/s':>11}  {'events/s':>11}  "
        f"{'cmd/CPU-s':>11}  {'spread of commands/s':>20}"
    )
    for row in rows:
        print(
            f"{row.label:<{width}}  {row.commands_per_second:>11,.0f}  "
            f"{row.events_per_second:>11,.0f}  {row.commands_per_cpu_second:>11,.0f}  "
            f"{row.spread:>20}"
        )
    print()


def print_ratio(name: str, ratio: float | None, target: str = "") -> None:
    """Print ``ratio <name>: 12.3x``, or ``n/a`` when a side did not run."""
    suffix = f"  (target {target})" if target else ""
    shown = "n/a" if not ratio else f"{ratio:.1f}x"
    print(f"ratio {name}: {shown}{suffix}")


# Our side: asyncio tasks sending commands through one Signal.


async def drive_signal(
    signal: Signal[Any, Any], *, clients: int, seconds: float, tag: str
) -> Sample:
    """Run ``clients`` tasks, each working through its own carts, until ``seconds`` pass."""
    finished = [0] * clients
    deadline = time.perf_counter() + seconds

    genesis = _takes_genesis_events(signal.store)

    async def client(k: int) -> None:
        number = k * CLIENT_STRIDE
        while time.perf_counter() < deadline:
            await run_cart(signal, f"{tag}-{number}", number, genesis=genesis)
            number += 1
            finished[k] += 1

    clock = Clock()
    await asyncio.gather(*(client(k) for k in range(clients)))
    carts = sum(finished)
    return clock.sample(carts * COMMANDS_PER_CART, carts * EVENTS_PER_CART)


_warned: set[str] = set()


def _takes_genesis_events(store: EventStore) -> bool:
    """Whether ``store.create`` stores first events (the current protocol) or only the id.

    A store that does not take them yet still runs, opening each cart in two writes, and the
    output says so.
    """
    if "events" in inspect.signature(store.create).parameters:
        return True
    name = type(store).__name__
    if name not in _warned:
        _warned.add(name)
        print(
            f"note: {name}.create() takes no events yet: its carts open in two writes "
            "(create, then the first command)"
        )
    return False


# The peer: plain calls for one client, threads for many.


def drive_peer(shop: PeerShop, *, clients: int, seconds: float) -> Sample:
    """Run ``clients`` threads (or the calling thread for one), each on its own carts."""
    finished = [0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1) if clients > 1 else None
    deadline = 0.0

    def client(k: int) -> None:
        try:
            if start is not None:
                start.wait()
            number = k * CLIENT_STRIDE
            while time.perf_counter() < deadline:
                run_peer_cart(shop, number)
                number += 1
                finished[k] += 1
        except BaseException as exc:
            errors.append(exc)

    if start is None:
        deadline = time.perf_counter() + seconds
        clock = Clock()
        client(0)
    else:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        deadline = time.perf_counter() + seconds
        clock = Clock()
        start.wait()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    carts = sum(finished)
    return clock.sample(carts * COMMANDS_PER_CART, carts * (EVENTS_PER_CART + 1))


Measurement = Callable[[float, float], Sample]
"""Runs one configuration from scratch: ``(warmup_seconds, seconds) -> Sample``."""

_runs = itertools.count()


def measure_signal(make: Callable[[Path], Signal[Any, Any]], clients: int) -> Measurement:
    """Measure a fresh Signal that ``make(folder)`` builds (``folder``: an empty temporary
    directory for file stores) in its own event loop: a warm-up, then the timed run, each on carts
    no other run used."""

    def run(warmup: float, seconds: float) -> Sample:
        async def main(folder: Path) -> Sample:
            async with make(folder) as signal:
                tag = f"run{next(_runs)}"
                await drive_signal(signal, clients=clients, seconds=warmup, tag=f"{tag}w")
                return await drive_signal(signal, clients=clients, seconds=seconds, tag=tag)

        with tempfile.TemporaryDirectory() as folder:
            return asyncio.run(main(Path(folder)))

    return run


def run_interleaved(
    configurations: Sequence[tuple[str, Measurement]], args: argparse.Namespace
) -> list[Series]:
    """Measure every configuration ``args.repeats`` times, round robin."""
    table = [Series(label) for label, _ in configurations]
    for _ in range(args.repeats):
        for series, (_, run) in zip(table, configurations, strict=True):
            sample = run(args.warmup, args.seconds)
            series.samples.append(sample)
            print(
                f"  {series.label}: {sample.commands_per_second:,.0f} commands/s",
                file=sys.stderr,
            )
    return table
