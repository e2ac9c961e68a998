"""The carts changed most recently, for the home page: a durable projection of every cart event.

The subscription ``cart-recent`` keeps two kinds of documents in the read model ``cart_recent``:
one per cart (its lines and total, whether it is paid), and one list, ``latest``, of the
:data:`SHOWN` carts changed last, newest first. The home page reads the list and those carts'
documents: a fixed number of reads however many carts there are. ``eventsignal rebuild STORE
cart-recent`` rebuilds both from the first event.
"""

from __future__ import annotations

import msgspec

from eventsignal import Event
from eventsignal.cart.domain import CartEvent, CartPaid, ProductAdded, ProductRemoved, cart_config
from eventsignal.stores import EventStore
from eventsignal.subscriptions import ReadModel, Subscription, Transaction, register

SHOWN = 10  # carts the home page lists
_LATEST = "latest"


class CartSummary(msgspec.Struct, frozen=True):
    """One cart as the home page lists it: its lines (sku to subtotal in cents), paid or not."""

    lines: dict[str, int] = msgspec.field(default_factory=dict)
    paid: bool = False

    @property
    def total(self) -> int:
        return sum(self.lines.values())


class RecentCart(msgspec.Struct, frozen=True):
    """A cart in the list: its id and summary."""

    cart_id: str
    summary: CartSummary


carts: ReadModel[CartSummary] = ReadModel("cart_recent", CartSummary)
latest: ReadModel[list[str]] = ReadModel("cart_recent_latest", list[str])


async def note_change(event: Event[CartEvent], tx: Transaction) -> None:
    key = f"cart:{event.aggregate_id}"
    summary = await carts.get(tx, key) or CartSummary()
    match event.data:
        case ProductAdded(product):
            summary = CartSummary({**summary.lines, product.sku: product.subtotal}, summary.paid)
        case ProductRemoved(sku):
            lines = {s: v for s, v in summary.lines.items() if s != sku}
            summary = CartSummary(lines, summary.paid)
        case CartPaid():
            summary = CartSummary(summary.lines, paid=True)
    await carts.put(tx, key, summary, event.position)
    order = await latest.get(tx, _LATEST) or []
    order = [event.aggregate_id, *(c for c in order if c != event.aggregate_id)][:SHOWN]
    await latest.put(tx, _LATEST, order, event.position)


recent_subscription = register(
    Subscription(
        name="cart-recent",
        handler=note_change,
        configs=[cart_config],
        read_models=[carts, latest],
        poll_interval=0.5,
    )
)


async def read_recent(store: EventStore) -> list[RecentCart]:
    """The carts changed last, newest first, as far as the subscription has counted."""
    order = await latest.read(store, _LATEST) or []
    found = []
    for cart_id in order:
        summary = await carts.read(store, f"cart:{cart_id}")
        if summary is not None:
            found.append(RecentCart(cart_id, summary))
    return found
