"""The revenue projection the subscription tests check, and a worker process that runs it.

Run as a script, it runs the projection against a store until SIGTERM (or until SIGKILL, which
is the point of some tests) and prints ``ready`` once it has started::

    python tests/subscription_worker.py sqlite /tmp/x.db --partitions 4 --lease-ttl 1
    python tests/subscription_worker.py postgres "host=... options=..." --partitions 4
    python tests/subscription_worker.py nats "nats://127.0.0.1:4222?stream=S" --partitions 4
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from typing import Any

from eventsignal import Event, Signal
from eventsignal.cart import AddToCart, CartPaid, CompletePurchase, Product, cart_config
from eventsignal.serialization import EventSerializer
from eventsignal.stores import EventStore
from eventsignal.subscriptions import ReadModel, Subscription, SubscriptionRunner, Transaction

carts: ReadModel[dict[str, int]] = ReadModel("carts", dict[str, int])


async def project(event: Event[Any], tx: Transaction) -> None:
    """Per cart: the last version seen, what it paid, and how often an event came out of order.

    An event applied twice, skipped or reordered shows up as an anomaly, so the tests can tell
    exactly-once in-order delivery from a projection that merely adds up right.
    """
    doc = await carts.get(tx, event.aggregate_id) or {"version": 0, "paid": 0, "anomalies": 0}
    if event.version != doc["version"] + 1:
        doc["anomalies"] += 1
    doc["version"] = max(doc["version"], event.version)
    if isinstance(event.data, CartPaid):
        doc["paid"] += event.data.total
    await carts.put(tx, event.aggregate_id, doc, event.position)


def revenue_projection(**options: Any) -> Subscription:
    options.setdefault("name", "revenue")
    options.setdefault("handler", project)
    options.setdefault("configs", [cart_config])
    options.setdefault("read_models", [carts])
    return Subscription(**options)


async def write_carts(
    signal: Signal[Any, Any], ids: list[str], seed: int = 0, pay_every: int = 1
) -> None:
    """Create carts, add one to three products to each and pay (every ``pay_every``-th)."""
    rng = random.Random(seed)
    for n, cart_id in enumerate(ids):
        await signal.create(cart_id)
        for i in range(rng.randint(1, 3)):
            product = Product(sku=f"sku-{i}", quantity=rng.randint(1, 5), price=rng.randint(1, 999))
            await signal.handle_command(cart_id, AddToCart(product))
        if n % pay_every == 0:
            await signal.handle_command(cart_id, CompletePurchase())


async def expected_from_events(store: EventStore) -> tuple[int, dict[str, int]]:
    """Revenue and each cart's version, folded straight from the store's log."""
    serializer = EventSerializer(cart_config.name, cart_config.event_types)
    revenue = 0
    versions: dict[str, int] = {}
    after = 0
    while batch := await store.read_all(after, 5000):
        for record in batch:
            if record.aggregate_name == "cart":
                versions[record.aggregate_id] = record.version
                data = serializer.decode(record)
                if isinstance(data, CartPaid):
                    revenue += data.total
        after = batch[-1].position
    return revenue, versions


async def projected(store: EventStore) -> tuple[int, dict[str, int], int]:
    """Revenue, each cart's version and the anomaly count, as the projection holds them."""
    docs = await carts.read_all(store)
    revenue = sum(d.value["paid"] for d in docs)
    anomalies = sum(d.value["anomalies"] for d in docs)
    return revenue, {d.key: d.value["version"] for d in docs}, anomalies


def open_store(kind: str, where: str) -> EventStore:
    if kind == "nats":
        from eventsignal.stores.urls import open_store as open_url

        return open_url(where)
    if kind == "sqlite":
        from eventsignal.stores import SQLiteStore

        return SQLiteStore(where, migrate=True)
    from eventsignal.stores import PostgresStore

    return PostgresStore(where, migrate=True, max_size=4)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sqlite", "postgres", "nats"])
    parser.add_argument("where")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--slow", type=float, default=0.0, help="seconds per event, in the tx")
    args = parser.parse_args()

    async def slow_project(event: Event[Any], tx: Transaction) -> None:
        await asyncio.sleep(args.slow)
        await project(event, tx)

    subscription = revenue_projection(
        handler=slow_project if args.slow else project,
        partitions=args.partitions,
        lease_ttl=args.lease_ttl,
        batch_size=args.batch_size,
        poll_interval=0.2,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with SubscriptionRunner(subscription, open_store(args.kind, args.where)) as runner:
        print("ready", runner.member, flush=True)
        await stop.wait()
    print("stopped", runner.delivered, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
