"""The stream browser's first page of a long stream, against the store's own page read.

One aggregate with ``--events`` events (100,000 by default) on SQLite and on PostgreSQL (skipped
when the server is down); the browser app in this process (no sockets) answers ``GET`` of the
stream's page, which reads one page of events by version and renders it. Printed per store:

* the first page's time, median of ``--repeats`` requests, against the target of one second;
* the store reading that page alone (``read_aggregate_page``), the ceiling: the ratio is what
  rendering and serving add;
* reading the whole stream (``read_aggregate``), which the page must never do.

Run it with::

    python benchmarks/bench_browser.py [--events 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from bench_stores import Scratch, our_store

from eventsignal.browser import create_app
from eventsignal.browser.catalog import PAGE
from eventsignal.stores.base import EventStore, PagedReads, StoredEvent

TARGET = 1.0  # seconds: the first page must show within this
BATCH = 1_000  # events per append while filling
DATA = b'{"sku":"apple","quantity":3,"price":120,"note":"a line of a long order"}'


def events(first: int, count: int) -> list[StoredEvent]:
    now = datetime.now(UTC)
    return [
        StoredEvent(
            id=uuid.uuid4(),
            aggregate_name="ledger",
            aggregate_id="big",
            version=version,
            name="LineAdded",
            timestamp=now,
            data=DATA,
            metadata={"correlation_id": "bench"},
        )
        for version in range(first, first + count)
    ]


async def fill(store: EventStore, total: int) -> None:
    await store.create("ledger", "big", events(1, min(BATCH, total)))
    version = min(BATCH, total)
    while version < total:
        count = min(BATCH, total - version)
        await store.append("ledger", "big", version, events(version + 1, count))
        version += count


async def timed(job: Callable[[], Awaitable[Any]], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await job()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def measure(backend: str, where: str, total: int, repeats: int) -> None:
    make = our_store("SQLiteStore" if backend == "sqlite" else "PostgresStore")
    assert make is not None
    store = make(where)
    await store.open()
    try:
        await fill(store, total)
    finally:
        await store.close()

    store = make(where)
    app = create_app(store)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):

        async def first_page() -> None:
            page = await client.get("/streams/ledger/big")
            assert page.status_code == 200, page.text
            assert page.text.count('class="event"') == PAGE

        assert isinstance(store, PagedReads)
        paged: PagedReads = store

        async def page_read() -> None:
            await paged.read_aggregate_page("ledger", "big", 0, PAGE + 1)

        async def whole_read() -> None:
            await store.read_aggregate("ledger", "big")

        await first_page()  # warm the connection and the templates
        shown = await timed(first_page, repeats)
        ceiling = await timed(page_read, repeats)
        whole = await timed(whole_read, max(1, repeats // 2))
    verdict = "met" if shown < TARGET else "NOT met"
    print(
        f"{backend}: first page of a {total:,}-event stream: {shown * 1000:.1f} ms "
        f"(target < {TARGET * 1000:,.0f} ms: {verdict})"
    )
    print(f"{backend}: store page read ({PAGE} events): {ceiling * 1000:.1f} ms")
    print(f"{backend}: whole-stream read, for comparison: {whole * 1000:.1f} ms")
    print(f"ratio {backend} first page to store page read: {shown / ceiling:.1f}x")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a short stream, two repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeats = 2_000, 2
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; median of {args.repeats}")
    with Scratch() as scratch:
        backends = ["sqlite"] + (["postgres"] if scratch.postgres else [])
        for backend in backends:
            where = scratch.our_location(backend)
            asyncio.run(measure(backend, where, args.events, args.repeats))


if __name__ == "__main__":
    main()
