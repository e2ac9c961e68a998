"""A writer process for the crash test: appends 3 events per command until it is killed.

Usage: ``python tests/pg_writer.py <dsn> <writers>``. Each of ``writers`` tasks owns one
aggregate and appends to it in a loop; after an append returns, the task prints
``<aggregate id> <version reached>`` and flushes, so every printed line is an acknowledged command.
"""

from __future__ import annotations

import asyncio
import sys

from eventsignal.stores import PostgresStore
from eventsignal.testing import make_events

EVENTS_PER_COMMAND = 3


async def write(store: PostgresStore, aggregate_id: str) -> None:
    await store.create("thing", aggregate_id)
    version = 0
    while True:
        events = make_events(aggregate_id, version, EVENTS_PER_COMMAND)
        await store.append("thing", aggregate_id, version, events)
        version += EVENTS_PER_COMMAND
        sys.stdout.write(f"{aggregate_id} {version}\n")
        sys.stdout.flush()


async def main(dsn: str, writers: int) -> None:
    async with PostgresStore(dsn, max_size=2) as store:
        await asyncio.gather(*(write(store, f"w-{n}") for n in range(writers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
