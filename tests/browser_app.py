"""An application for the stream browser's tests: the cart's aggregate, and a subscription that
fails on carts whose id starts with ``cursed`` until it is healed.

``eventsignal ui STORE --app browser_app:configs`` imports it as a user's module would be; a
browser test in another process heals it by creating the file ``$BROWSER_APP_HEALED`` names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eventsignal import Event
from eventsignal.cart import cart_config
from eventsignal.subscriptions import ReadModel, Subscription, Transaction, register

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
