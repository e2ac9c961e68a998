"""A writer process that prints each command once the store acknowledged it, for crash tests.

Usage::

    python tests/acking_writer.py --store {sqlite,nats} --target T [--commands N] [--clients 4]

Each client creates aggregates ``c<K>-<n>`` one after another and sends each five commands of
the tally domain (:mod:`many_writer`), one or two events each; after every acknowledged command
it prints ``<aggregate id> <version>``. With ``--commands`` it prints ``done`` once that many
were acknowledged and waits for its standard input to close; without, it writes until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys

from many_writer import Add, config, open_store

from eventsignal import Signal


async def main(args: argparse.Namespace) -> None:
    store = open_store(args.store, args.target)
    acknowledged = 0
    enough = asyncio.Event()

    async with Signal(config(), store=store, telemetry=None) as signal:

        async def client(k: int) -> None:
            nonlocal acknowledged
            number = 0
            for n in itertools.count():
                aggregate = await signal.create(f"c{k}-{n}")
                for _ in range(5):
                    if enough.is_set():
                        return
                    number += 1
                    await aggregate.handle_command(Add(k, number, 1 + number % 2))
                    print(aggregate.id, aggregate.version, flush=True)
                    acknowledged += 1
                    if args.commands and acknowledged >= args.commands:
                        enough.set()

        await asyncio.gather(*(client(k) for k in range(args.clients)))
    print("done", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, choices=["sqlite", "nats"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--commands", type=int, default=0)
    parser.add_argument("--clients", type=int, default=4)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
