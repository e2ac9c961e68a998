"""Revenue over all paid carts: a durable projection of ``CartPaid`` events.

The subscription ``cart-revenue`` folds payments into one document of the read model
``cart_revenue``, in the same transaction that advances its checkpoint, so every payment counts
exactly once: across restarts, and across processes sharing the store (one of them holds the
subscription's lease and counts for all). ``eventsignal rebuild STORE cart-revenue`` recounts
from the first event.
"""

from __future__ import annotations

import msgspec

from eventsignal import Event
from eventsignal.cart.domain import CartEvent, CartPaid, cart_config
from eventsignal.stores import EventStore
from eventsignal.subscriptions import (
    ReadModel,
    Subscription,
    SubscriptionTimeout,
    Transaction,
    register,
    wait_until_processed,
)

_KEY = "all"


class RevenueTotals(msgspec.Struct, frozen=True):
    total: int = 0  # cents
    paid_carts: int = 0


revenue_totals: ReadModel[RevenueTotals] = ReadModel("cart_revenue", RevenueTotals)


async def count_payment(event: Event[CartEvent], tx: Transaction) -> None:
    paid = event.data
    if not isinstance(paid, CartPaid):
        return
    now = await revenue_totals.get(tx, _KEY) or RevenueTotals()
    counted = RevenueTotals(now.total + paid.total, now.paid_carts + 1)
    await revenue_totals.put(tx, _KEY, counted, event.position)


revenue_subscription = register(
    Subscription(
        name="cart-revenue",
        handler=count_payment,
        configs=[cart_config],
        event_names=["CartPaid"],
        read_models=[revenue_totals],
        poll_interval=0.5,  # how soon payments made by other processes are seen
    )
)


async def read_revenue(store: EventStore, *, within: float = 5.0) -> tuple[RevenueTotals, bool]:
    """The totals including every event stored so far, and whether they are that fresh.

    Waits up to ``within`` seconds for the subscription to reach the store's head (a runner
    must be running somewhere); after that it answers with the last counted totals and ``False``.
    """
    head = await store.head_position()
    try:
        await wait_until_processed(store, revenue_subscription.name, head, within)
        fresh = True
    except SubscriptionTimeout:
        fresh = False
    return await revenue_totals.read(store, _KEY) or RevenueTotals(), fresh
