"""A writer process that keeps sending commands to shared aggregates while a cluster fails.

Usage::

    python tests/fault_writer.py --servers nats://a:1,nats://b:2 --stream S --worker K
        [--aggregates 20] [--clients 2] [--pause 0.05] [--timeout 2]

It opens a :class:`~eventsignal.stores.NatsStore` on the servers (a three-replica stream),
creates the shared aggregates ``shared-0 ...`` of the tally domain (:mod:`many_writer`) or
loads them when another writer won, prints ``ready`` and waits for a line on stdin. Its clients
then send commands, each to a random shared aggregate, with ``--pause`` seconds between two, and
the engine retries conflicts. A second line on stdin stops them; the writer prints one JSON
line: every command with its aggregate, number, events, start and end (``time.monotonic()``,
one clock for all processes of the machine) and outcome:

* ``ok``: acknowledged, so it must be stored, exactly once;
* ``unknown``: the store could not say (a timeout, a connection lost while waiting): it may or
  may not be stored, but never twice;
* ``refused``: nothing was stored (see :func:`outcome_of`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Any

from many_writer import Add, config

from eventsignal import AggregateExists, ConcurrencyError, Signal, SignalError
from eventsignal.stores import NatsStore

NOTHING_STORED = (
    "nothing was sent",  # the connection was down: the request never left
    "no JetStream stream answers",  # nobody received it
    "nothing was stored",
    # Reads: before the append (the aggregate's newest message) or catching up after a
    # conflict. The engine stops at a failed read, so no write of this command is in doubt.
    "$JS.API.",
    "cannot read ",
    "reading ",
    "message get on ",
    "direct get on ",
)
"""What a StoreUnavailable says when the command cannot have been stored."""


def outcome_of(exc: SignalError) -> str:
    """What the store said about a failed command: nothing stored, or it cannot tell.

    Conflicts beyond the retries and the errors of :data:`NOTHING_STORED` stored nothing, and
    the check holds the store to that; any other failure (a write that timed out: "may or may
    not have been stored") counts as unknown, whole or absent but never twice.
    """
    if isinstance(exc, ConcurrencyError):
        return "refused"
    message = str(exc)
    if "may or may not" not in message and any(p in message for p in NOTHING_STORED):
        return "refused"
    return "unknown"


async def main(args: argparse.Namespace) -> None:
    store = NatsStore(
        args.servers.split(","),
        stream=args.stream,
        replicas=3,
        timeout=args.timeout,
        durability="ignore",
    )
    shared = [f"shared-{n}" for n in range(args.aggregates)]
    signal = Signal(
        config(), store=store, pool_size=len(shared) + 10, telemetry=None, conflict_retries=1000
    )
    loop = asyncio.get_running_loop()
    async with signal:
        for aggregate_id in shared:
            with contextlib.suppress(AggregateExists):
                await signal.create(aggregate_id)
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

        stop = asyncio.Event()
        commands: list[list[Any]] = []
        numbers = iter(range(1, 10**9))
        rng = random.Random(args.worker)

        async def client() -> None:
            while not stop.is_set():
                aggregate_id, number = rng.choice(shared), next(numbers)
                command = Add(args.worker, number, 1 + number % 2)
                started = time.monotonic()
                try:
                    await signal.handle_command(aggregate_id, command)
                except SignalError as exc:
                    outcome, error = outcome_of(exc), f"{type(exc).__name__}: {exc}"
                else:
                    outcome, error = "ok", ""
                ended = time.monotonic()
                commands.append([aggregate_id, number, command.events, started, ended, outcome])
                if error:
                    commands[-1].append(error)
                await asyncio.sleep(args.pause)

        async def stopper() -> None:
            await loop.run_in_executor(None, sys.stdin.readline)
            stop.set()

        await asyncio.gather(stopper(), *(client() for _ in range(args.clients)))
    print(json.dumps({"worker": args.worker, "commands": commands}), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--aggregates", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=2.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
