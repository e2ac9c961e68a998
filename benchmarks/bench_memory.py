"""The core engines side by side: eventsignal on MemoryStore vs eventsourcing on POPO.

No I/O on either side, so this measures what each library itself costs per command: loading the
aggregate from its cache, running the command, recording the events. Run it with::

    .venv/bin/python benchmarks/bench_memory.py [--seconds 3] [--repeats 5] [--clients 64]

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
import statistics
import timeit
from collections.abc import Sequence

import msgspec
from common import (
    Measurement,
    Sample,
    Series,
    drive_peer,
    measure_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_ratio,
    print_table,
    run_interleaved,
)
from workload import CART, ItemAdded, ItemRemoved, PeerShop, PurchaseCompleted, peer_env

from eventsignal import Signal
from eventsignal.serialization import EventSerializer
from eventsignal.stores import MemoryStore
from eventsignal.telemetry import log_telemetry


def ours(clients: int, cache: int, *, telemetry: bool) -> Measurement:
    hook = log_telemetry if telemetry else None
    return measure_signal(
        lambda _: Signal(CART, store=MemoryStore(), pool_size=cache, telemetry=hook), clients
    )


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
    # The target is set against the peer in memory, cache on, at its
    # default settings. Its fastest (unsafe) mode is the harder comparison, printed beside it.
    default, bare, *peers = table
    print_ratio(f"memory c={clients}", paired_ratio(default, peers[:1]), ">= 15x")
    print_ratio(f"memory c={clients} telemetry=None", paired_ratio(bare, peers[:1]))
    cpu = paired_ratio(default, peers[:1], lambda s: s.commands_per_cpu_second)
    print_ratio(f"memory c={clients} per CPU second", cpu)
    print_ratio(f"memory c={clients} vs peer fastest mode", paired_ratio(default, peers))
    per_cpu = paired_ratio(default, peers, lambda s: s.commands_per_cpu_second)
    print_ratio(f"memory c={clients} vs peer fastest mode, per CPU second", per_cpu)


def check_cost(single_client: Series, rounds: int) -> None:
    """What checking each event against its type costs (the read-back decode, and the NaN scan
    where a ``null`` appears), per event and as a share of a command at one client."""
    serializer = EventSerializer(CART.name, CART.event_types)
    events = [ItemAdded("sku-17", 1250), ItemRemoved("sku-17"), PurchaseCompleted(3750)]
    bare = msgspec.json.Encoder().encode

    def checked() -> None:
        for event in events:
            serializer.encode(event, aggregate_id="cart-1", version=1)

    def unchecked() -> None:
        for event in events:
            bare(event)

    number = 20_000
    cost = [
        (
            min(timeit.repeat(checked, number=number, repeat=3))
            - min(timeit.repeat(unchecked, number=number, repeat=3))
        )
        / (number * len(events))
        for _ in range(max(rounds, 1))
    ]
    per_event = statistics.median(cost)
    per_command = 1 / single_client.commands_per_second
    print(
        f"type check per event: {per_event * 1e6:.2f} us "
        f"({per_event / per_command:.1%} of a command at c=1; the cart stores ~1.2 events "
        "per command)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = parse_args(__doc__ or "", argv)
    print_header("eventsignal MemoryStore vs eventsourcing POPO (cache on)", args)
    levels = [1, args.clients] if args.clients > 1 else [1]
    tables = {c: run_interleaved(configurations(c, args.cache), args) for c in levels}
    for table in tables.values():
        print_table(table)
    for clients, table in tables.items():
        report(clients, table)
    check_cost(tables[1][0], args.repeats)


if __name__ == "__main__":
    main()
