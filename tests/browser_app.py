"""An application for the stream browser's tests: the cart's aggregate, and a subscription that
fails on carts whose id starts with ``cursed`` until it is healed.

``eventsignal ui STORE --app browser_app:configs`` imports it as a user's module would be; a
browser test in another process heals it by creating the file ``$BROWSER_APP_HEALED`` names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eventsignal import Event, Signal
from eventsignal.cart import AddToCart, CompletePurchase, Product, RemoveFromCart, cart_config
from eventsignal.stores import EventStore
from eventsignal.subscriptions import (
    ParkedEvent,
    ReadModel,
    Subscription,
    SubscriptionRunner,
    Transaction,
    parked_events,
    register,
    wait_until_processed,
)

HEALED_FILE = "BROWSER_APP_HEALED"

configs = [cart_config]
healed = {"on": False}
seen: ReadModel[dict[str, int]] = ReadModel("browser-seen")


def is_healed() -> bool:
    marker = os.environ.get(HEALED_FILE)
    return healed["on"] or bool(marker and Path(marker).exists())


async def count(event: Event[Any], tx: Transaction) -> None:
    if event.aggregate_id.startswith("cursed") and not is_healed():
        raise ValueError(f"{event.aggregate_id} is cursed")
    document = await seen.get(tx, event.aggregate_id) or {"events": 0}
    await seen.put(tx, event.aggregate_id, {"events": document["events"] + 1}, event.position)


fragile = register(
    Subscription(
        name="browser-fragile",
        handler=count,
        configs=[cart_config],
        read_models=[seen],
        max_attempts=1,
        retry_delay=0,
    )
)


LONG_CART = 55  # products added to cart c-1: more than a page of events


async def fill(store: EventStore) -> dict[str, list[ParkedEvent]]:
    """Carts (c-1 with a long history and metadata, three empty ones, cursed-1 paid), then the
    fragile subscription run once, so that it parks cursed-1's two events. ``store`` is open."""
    healed["on"] = False
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await signal.create("c-1")
        for n in range(LONG_CART):
            await signal.handle_command("c-1", AddToCart(Product(f"sku-{n}", 1, 100 + n)))
        metadata = {
            "causation_id": "00000000-0000-4000-8000-000000000001",
            "correlation_id": "flow-7",
            "api_token": "hunter2",
        }
        await signal.handle_command("c-1", RemoveFromCart("sku-0"), metadata=metadata)
        for n in range(3):
            await signal.create(f"c-{n + 2}")
        await signal.create("cursed-1")
        await signal.handle_command("cursed-1", AddToCart(Product("apple", 3, 120)))
        await signal.handle_command("cursed-1", CompletePurchase())
    async with SubscriptionRunner(fragile, store):
        await wait_until_processed(store, fragile.name, await store.head_position(), 10)
    parked = await parked_events(store, fragile.name)
    assert [p.aggregate_id for p in parked] == ["cursed-1", "cursed-1"]
    return {"parked": parked}
