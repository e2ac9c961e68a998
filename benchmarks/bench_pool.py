"""What the pool costs in memory for each live aggregate, beyond the aggregate's own state.

Fills a Signal's pool with ``--aggregates`` carts of three products each (rebuilt from a
MemoryStore filled beforehand), and measures with :mod:`tracemalloc` the bytes still held once
they are all live. The same states are then copied and measured on their own; the difference,
per aggregate, is what the pool adds: the live aggregate, its entry in the pool, and anything
else kept per aggregate. Run it with::

    .venv/bin/python benchmarks/bench_pool.py [--aggregates 10000] [--repeats 5]

The figure is deterministic for a given Python and library version; ``--repeats`` takes the
median anyway, in case something else allocates during a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from common import parse_args
from workload import CART, AddToCart, Cart, cart_plan

from eventsignal import Signal
from eventsignal.stores import MemoryStore

TARGET = 1024  # bytes per live aggregate, beyond its state


async def held_by(work: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    """Bytes allocated by ``work`` and still held when it returns, and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = await work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


async def fill(store: MemoryStore, ids: Sequence[str]) -> None:
    async with Signal(CART, store=store, pool_size=100, telemetry=None) as writer:
        for number, aggregate_id in enumerate(ids):
            first, *more = cart_plan(number)[0]
            await writer.create(aggregate_id, AddToCart(*first))
            for sku, price in more:
                await writer.handle_command(aggregate_id, AddToCart(sku, price))


async def measure(count: int) -> tuple[float, float]:
    """Bytes per live aggregate: (held by the pool beyond the states, held by the states)."""
    store = MemoryStore()
    ids = [f"cart-{number:07d}" for number in range(count)]
    await fill(store, ids)
    async with Signal(CART, store=store, pool_size=count) as signal:

        async def bring_in() -> None:
            for aggregate_id in ids:
                await signal.aggregate(aggregate_id)

        pool_bytes, _ = await held_by(bring_in)
        assert signal.pool_size == count, signal.pool_size
        handles = [await signal.aggregate(aggregate_id) for aggregate_id in ids]
        encoded = [msgspec.json.encode(handle.state) for handle in handles]
        del handles
        decode = msgspec.json.Decoder(Cart).decode

        async def copy_states() -> list[Cart]:
            return [decode(data) for data in encoded]

        state_bytes, states = await held_by(copy_states)
        state_bytes -= sys.getsizeof(states)  # the list holding the copies is not theirs
        del states
    return (pool_bytes - state_bytes) / count, state_bytes / count


def main(argv: Sequence[str] | None = None) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--aggregates", type=int, default=10_000, help="live aggregates")

    args = parse_args(__doc__ or "", argv, options)
    if args.quick:
        args.aggregates = 1000
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(f"# pool memory with {args.aggregates:,} live aggregates (tracemalloc)")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, load average {load[0]:.2f}; "
        f"median of {args.repeats}"
    )
    print()
    rounds = [asyncio.run(measure(args.aggregates)) for _ in range(args.repeats)]
    overhead = statistics.median(pool for pool, _ in rounds)
    state = statistics.median(state for _, state in rounds)
    print(f"state per aggregate (a cart of three products): {state:,.0f} B")
    verdict = "met" if overhead <= TARGET else "NOT met"
    print(
        f"pool overhead per live aggregate: {overhead:,.0f} B beyond its state "
        f"(target <= {TARGET:,} B: {verdict})"
    )


if __name__ == "__main__":
    main()
