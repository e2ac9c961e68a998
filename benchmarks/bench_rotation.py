"""What re-encryption under a new key costs the commands running beside it.

Per store (memory, SQLite), two configurations measured round robin in the same run::

    .venv/bin/python benchmarks/bench_rotation.py [--seconds 3] [--repeats 5] [--clients 64]

``steady``: commands under ``AesGcm``, nothing else. ``rotating``: the same commands while the
key is rotated and the whole log re-encrypted (``reencrypt``, pages of 500) over and over, so
the timed window is re-encryption all along: the worst case. ``paced``: the same with
``pause=0.01`` after each page (``eventsignal keys rotate --pause``). Each ratio is commands/s
over the steady ones, wall-clock (the re-encryption runs in this process, so a CPU second is
shared by both); the rate of re-encryption beside them is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common import (
    Measurement,
    Sample,
    drive_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_table,
    run_interleaved,
)
from workload import CART

from eventsignal import Signal
from eventsignal.codecs import AesGcm, KeyRing, generate_key, reencrypt
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore

_runs = itertools.count()
_rewritten: dict[str, list[float]] = {}


MODES = {"steady": None, "rotating": 0.0, "paced": 0.01}


def measure(store_kind: str, clients: int, cache: int, mode: str) -> Measurement:
    label = f"{store_kind} {mode}"
    pause = MODES[mode]

    def run(warmup: float, seconds: float) -> Sample:
        async def main(folder: Path) -> Sample:
            store: EventStore = MemoryStore()
            if store_kind == "sqlite":
                store = SQLiteStore(folder / "bench.db", migrate=True)
            keys = KeyRing({"k0": generate_key()}, current="k0")
            codec = AesGcm(keys)
            tag = f"run{next(_runs)}"
            async with Signal(
                CART, store=store, pool_size=cache, telemetry=None, transcoder=codec
            ) as signal:
                # The warm-up writes the log the rotation then re-encrypts, under k0.
                await drive_signal(signal, clients=clients, seconds=warmup, tag=f"{tag}w")
                rewritten = 0
                stop = asyncio.Event()

                async def rotate() -> None:
                    nonlocal rewritten
                    while not stop.is_set():
                        keys.add(f"k{len(keys.ids())}", generate_key())
                        assert pause is not None
                        report = await reencrypt(store, codec, snapshots=False, pause=pause)
                        rewritten += report.rewritten

                rotation = asyncio.create_task(rotate()) if pause is not None else None
                loop = asyncio.get_running_loop()
                started = loop.time()
                sample = await drive_signal(signal, clients=clients, seconds=seconds, tag=tag)
                elapsed = loop.time() - started
                if rotation is not None:
                    stop.set()
                    await rotation
                    _rewritten.setdefault(label, []).append(rewritten / elapsed)
                return sample

        with tempfile.TemporaryDirectory() as folder:
            return asyncio.run(main(Path(folder)))

    return run


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = parse_args(__doc__ or "", argv)
    print_header("eventsignal commands while re-encrypting", args)
    for store_kind in ("memory", "sqlite"):
        configurations = [
            (
                f"{store_kind} c={args.clients} {mode}",
                measure(store_kind, args.clients, args.cache, mode),
            )
            for mode in MODES
        ]
        steady, *others = table = run_interleaved(configurations, args)
        print_table(table)
        for mode, series in zip(list(MODES)[1:], others, strict=True):
            rates = sorted(_rewritten.get(f"{store_kind} {mode}", [0.0]))
            wall = paired_ratio(series, [steady])
            print(
                f"ratio {store_kind} {mode} / steady: {wall:.3f}x wall-clock, "
                f"re-encrypting {rates[len(rates) // 2]:,.0f} payloads/s beside them"
            )
        print()


if __name__ == "__main__":
    main()
