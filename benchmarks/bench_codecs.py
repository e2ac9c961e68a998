"""What encryption and compression at rest cost a command, on MemoryStore and SQLiteStore.

Four configurations per store, measured round robin in the same run::

    .venv/bin/python benchmarks/bench_codecs.py [--seconds 3] [--repeats 5] [--clients 64]

no codec, ``AesGcm`` (AES-256-GCM, payload bound to its row), ``Zstd`` and
``chain(Zstd(), AesGcm(...))``. Each ratio is the codec's rate over the plain rate of the same
round (target: within 25%, i.e. >= 0.75x), per CPU second of this process (robust to other work
on the machine) and wall-clock. The cart's events are small (under 64 bytes), so ``Zstd`` leaves
most of them as they are: that is its cost on a typical command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    Measurement,
    measure_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_table,
    run_interleaved,
)
from workload import CART

from eventsignal import Signal
from eventsignal.codecs import AesGcm, KeyRing, Zstd, chain, generate_key
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore

CODECS = ("none", "aes", "zstd", "zstd+aes")


def _codec(name: str) -> Any:
    keys = KeyRing({"k1": generate_key()}, current="k1")
    return {
        "none": None,
        "aes": AesGcm(keys),
        "zstd": Zstd(),
        "zstd+aes": chain(Zstd(), AesGcm(keys)),
    }[name]


def ours(store_kind: str, codec: str, clients: int, cache: int) -> Measurement:
    def make(folder: Path) -> Signal[Any, Any]:
        store: EventStore = MemoryStore()
        if store_kind == "sqlite":
            store = SQLiteStore(folder / "bench.db", migrate=True)
        return Signal(CART, store=store, pool_size=cache, telemetry=None, transcoder=_codec(codec))

    return measure_signal(make, clients)


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = parse_args(__doc__ or "", argv)
    print_header("eventsignal with and without codecs", args)
    for store_kind in ("memory", "sqlite"):
        configurations = [
            (f"{store_kind} c={args.clients} {codec}", ours(store_kind, codec, args.clients, 1000))
            for codec in CODECS
        ]
        plain, *coded = table = run_interleaved(configurations, args)
        print_table(table)
        for codec, series in zip(CODECS[1:], coded, strict=True):
            wall = paired_ratio(series, [plain])
            cpu = paired_ratio(series, [plain], lambda s: s.commands_per_cpu_second)
            print(
                f"ratio {store_kind} {codec} / none: {cpu:.3f}x per CPU second, "
                f"{wall:.3f}x wall-clock  (target >= 0.75x)"
            )


if __name__ == "__main__":
    main()
