"""Commands per second through a Signal on a SQLiteStore, at several concurrency levels.

Each task owns one aggregate and sends it commands back to back, so the number of tasks is the
number of commands in flight; group commit turns them into shared transactions::

    python benchmarks/bench_sqlite.py --commands 4000 --concurrency 1 64
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from eventsignal import AggregateConfig, Event, Signal
from eventsignal.stores import SQLiteStore


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Deposited:
    amount: int


def handle(command: Deposit, balance: int) -> list[Deposited]:
    return [Deposited(command.amount)]


def apply(balance: int, event: Event[Deposited]) -> int:
    return balance + event.data.amount


ACCOUNT = AggregateConfig(
    name="account", initial_state=0, command_handler=handle, event_handler=apply, events=[Deposited]
)


async def measure(path: Path, commands: int, concurrency: int) -> tuple[float, int]:
    """Run ``commands`` commands over ``concurrency`` tasks; return (commands/s, transactions)."""
    store = SQLiteStore(path, migrate=True)
    async with Signal(ACCOUNT, store=store, pool_size=concurrency, telemetry=None) as signal:
        ids = [f"acc-{concurrency}-{i}" for i in range(concurrency)]
        for aggregate_id in ids:
            await signal.create(aggregate_id)
        per_task = commands // concurrency
        before = store.stats.transactions

        async def client(aggregate_id: str) -> None:
            for _ in range(per_task):
                await signal.handle_command(aggregate_id, Deposit(1))

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in ids))
        elapsed = time.perf_counter() - started
        return per_task * concurrency / elapsed, store.stats.transactions - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as folder:
        for concurrency in args.concurrency:
            path = Path(folder) / f"bench-{concurrency}.db"
            rate, transactions = asyncio.run(measure(path, args.commands, concurrency))
            print(
                f"concurrency {concurrency:>4}: {rate:>9,.0f} commands/s "
                f"({args.commands // concurrency * concurrency} commands, "
                f"{transactions} transactions)"
            )


if __name__ == "__main__":
    main()
