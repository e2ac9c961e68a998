"""The core engines side by side: eventsignal on MemoryStore vs eventsourcing on POPO.

No I/O on either side, so this measures what each library itself costs per command: loading the
aggregate from its cache, running the command, recording the events. Run it with::

    /work/venv/bin/python benchmarks/bench_memory.py [--seconds 3] [--repeats 5] [--clients 64]

Our figures are shown with the default telemetry hook (``log_telemetry``, which users keep) and
with ``telemetry=None``; the ratio lines use the default. The peer is shown with its aggregate
cache in three modes: its defaults (fast-forward: every load also asks the store for newer
events; and a deep copy of the cached aggregate per command, so a failing command cannot corrupt
the cache), fast-forward off, and both off (its fastest, though unsafe if a command fails after
changing the aggregate). The target ratio is taken against the peer's defaults (its in-memory
mode with the cache on, as the target is stated), and the "vs peer fastest mode" ratios against
its fastest figure. Each ratio is the median over repeat rounds of the ratio within a round
(see ``common.paired_ratio``); "per CPU second" divides by this process's CPU time instead of
wall-clock time, which other work on a shared machine disturbs far less.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Sequence

from common import (
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
from workload import CART, PeerShop, peer_env

from eventsignal import Signal
from eventsignal.stores import MemoryStore
from eventsignal.telemetry import log_telemetry

_runs = itertools.count()


def ours(clients: int, cache: int, *, telemetry: bool) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            hook = log_telemetry if telemetry else None
            signal = Signal(CART, store=MemoryStore(), pool_size=cache, telemetry=hook)
            async with signal:
                tag = f"run{next(_runs)}"
                await drive_signal(signal, clients=clients, seconds=warmup, tag=f"{tag}w")
                return await drive_signal(signal, clients=clients, seconds=seconds, tag=tag)

        return asyncio.run(main())

    return run


def peer(clients: int, cache: int, *, fastforward: bool, deepcopy: bool = True) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        settings = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        env = peer_env(cache, settings, fastforward=fastforward, deepcopy=deepcopy)
        shop = PeerShop(env=env)
        try:
            drive_peer(shop, clients=clients, seconds=warmup)
            return drive_peer(shop, clients=clients, seconds=seconds)
        finally:
            shop.close()

    return run


def configurations(clients: int, cache: int) -> list[tuple[str, Measurement]]:
    return [
        (f"eventsignal c={clients}", ours(clients, cache, telemetry=True)),
        (f"eventsignal c={clients} telemetry=None", ours(clients, cache, telemetry=False)),
        (f"eventsourcing c={clients} fast-forward", peer(clients, cache, fastforward=True)),
        (f"eventsourcing c={clients} no fast-forward", peer(clients, cache, fastforward=False)),
        (
            f"eventsourcing c={clients} no fast-forward, no deepcopy",
            peer(clients, cache, fastforward=False, deepcopy=False),
        ),
    ]


def report(clients: int, table: Sequence[Series]) -> None:
    # The target is set against the peer as the issue names it: in memory, cache on, its
    # default settings. Its fastest (unsafe) mode is the harder comparison, printed beside it.
    default, bare, *peers = table
    print_ratio(f"memory c={clients}", paired_ratio(default, peers[:1]), ">= 10x")
    print_ratio(f"memory c={clients} telemetry=None", paired_ratio(bare, peers[:1]))
    print_ratio(f"memory c={clients} vs peer fastest mode", paired_ratio(default, peers))
    per_cpu = paired_ratio(default, peers, lambda s: s.commands_per_cpu_second)
    print_ratio(f"memory c={clients} vs peer fastest mode, per CPU second", per_cpu)


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = parse_args(__doc__ or "", argv)
    print_header("eventsignal MemoryStore vs eventsourcing POPO (cache on)", args)
    levels = [1, args.clients] if args.clients > 1 else [1]
    tables = {c: run_interleaved(configurations(c, args.cache), args) for c in levels}
    for table in tables.values():
        print_table(table)
    for clients, table in tables.items():
        report(clients, table)


if __name__ == "__main__":
    main()
