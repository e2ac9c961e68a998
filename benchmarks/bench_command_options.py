"""What idempotency keys and the application's own writes cost per command, on SQLite and
PostgreSQL, against plain commands measured in the same run (the ceiling).

Run it with::

    .venv/bin/python benchmarks/bench_command_options.py [--seconds 3] [--repeats 5] [--clients 64]

Each configuration runs the cart workload (see :mod:`workload`) with ``--clients`` concurrent
clients on fresh tables:

* plain: the commands as they are, committed together by group commit;
* keyed: every command with an idempotency key of its own, so each one is looked up before it
  runs and recorded with its events (in the group commit's transaction);
* own writes: every command also inserts one row into an application table, in the
  transaction that stores its events. Such a command leaves the group commit for a transaction
  of its own (one commit, one flush each; on SQLite it holds the file's write lock for its
  statements), so this is the price of the feature at its most frequent.

Whether commands without either option got slower is shown by ``bench_stores.py`` and
``bench_memory.py``, run before and after the change: their path is the one they always took.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench_stores import Scratch, our_store
from common import (
    CLIENT_STRIDE,
    Clock,
    Measurement,
    Sample,
    paired_ratio,
    parse_args,
    print_header,
    print_ratio,
    print_table,
    run_interleaved,
)
from workload import CART, COMMANDS_PER_CART, EVENTS_PER_CART, cart_commands

from eventsignal import Event, Signal
from eventsignal.stores.sql import SQLStore, SQLTransaction, for_dialect

Options = Callable[[SQLStore, str, int], dict[str, Any]]
"""The keyword arguments one command gets: ``(store, cart id, command number)``."""

_runs = itertools.count()


def plain(store: SQLStore, cart_id: str, number: int) -> dict[str, Any]:
    return {}


def keyed(store: SQLStore, cart_id: str, number: int) -> dict[str, Any]:
    return {"idempotency_key": f"{cart_id}/{number}"}


def own_writes(store: SQLStore, cart_id: str, number: int) -> dict[str, Any]:
    insert = for_dialect("INSERT INTO cart_log (cart, version) VALUES (?, ?)", store.dialect)

    async def write(tx: SQLTransaction, events: Sequence[Event[Any]]) -> None:
        await tx.execute(insert, (cart_id, events[0].version))

    return {"own_writes": write}


OPTIONS: dict[str, Options] = {"plain": plain, "keyed": keyed, "own writes": own_writes}


async def drive(
    signal: Signal[Any, Any], store: SQLStore, options: Options, clients: int, seconds: float
) -> Sample:
    """Run ``clients`` tasks through their carts until ``seconds`` pass."""
    finished = [0] * clients
    deadline = time.perf_counter() + seconds
    tag = f"run{next(_runs)}"

    async def client(k: int) -> None:
        number = k * CLIENT_STRIDE
        while time.perf_counter() < deadline:
            cart_id = f"{tag}-{number}"
            opening, *commands = cart_commands(number)
            await signal.create(cart_id, opening, **options(store, cart_id, 0))
            for step, command in enumerate(commands, start=1):
                await signal.handle_command(cart_id, command, **options(store, cart_id, step))
            number += 1
            finished[k] += 1

    clock = Clock()
    await asyncio.gather(*(client(k) for k in range(clients)))
    carts = sum(finished)
    return clock.sample(carts * COMMANDS_PER_CART, carts * EVENTS_PER_CART)


def measurement(scratch: Scratch, backend: str, options: Options, clients: int) -> Measurement:
    name = "SQLiteStore" if backend == "sqlite" else "PostgresStore"
    make = our_store(name)
    assert make is not None

    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            store = make(scratch.our_location(backend))
            assert isinstance(store, SQLStore)
            async with Signal(CART, store=store, pool_size=1000, telemetry=None) as signal:
                async with store.transaction() as tx:
                    await tx.execute(
                        "CREATE TABLE cart_log (cart TEXT NOT NULL, version INTEGER NOT NULL)"
                    )
                await drive(signal, store, options, clients, warmup)
                return await drive(signal, store, options, clients, seconds)

        return asyncio.run(main())

    return run


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="which to run: sqlite, postgres or both"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv, _options)
    print_header("idempotency keys and own writes vs plain commands", args)
    with Scratch() as scratch:
        backends = [b for b in args.backends.split(",") if scratch.postgres or b != "postgres"]
        for backend in backends:
            rows = [
                (
                    f"{backend} {label} c={args.clients}",
                    measurement(scratch, backend, o, args.clients),
                )
                for label, o in OPTIONS.items()
            ]
            table = run_interleaved(rows, args)
            print_table(table)
            ceiling = table[0]
            for series in table[1:]:
                label = series.label.removeprefix(f"{backend} ").removesuffix(f" c={args.clients}")
                print_ratio(
                    f"{backend} {label} to plain c={args.clients}", paired_ratio(series, [ceiling])
                )
            print()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
