"""A shopping cart: declare it, create one, send it commands (one is rejected), see each stored
event as a subscriber gets it, and rebuild the cart from its events alone. Kept in memory, so
every run starts afresh.

Run it with ``.venv/bin/python examples/quickstart.py`` once ``scripts/run`` or ``scripts/setup``
has made ``.venv``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from eventsignal import AggregateConfig, CommandRejected, Event, Signal
from eventsignal.stores import MemoryStore


@dataclass(frozen=True)
class Cart:
    items: dict[str, int] = field(default_factory=dict)  # sku -> price in cents
    paid: bool = False


@dataclass(frozen=True)
class AddItem:
    sku: str
    price: int


@dataclass(frozen=True)
class Pay:
    pass


@dataclass(frozen=True)
class ItemAdded:
    sku: str
    price: int


@dataclass(frozen=True)
class CartPaid:
    total: int


def handle(command: AddItem | Pay, cart: Cart) -> list[ItemAdded | CartPaid]:
    if cart.paid:
        raise CommandRejected("the cart is already paid")
    match command:
        case AddItem(sku, price) if sku in cart.items:
            raise CommandRejected(f"{sku} is already in the cart")
        case AddItem(sku, price):
            return [ItemAdded(sku, price)]
        case Pay():
            return [CartPaid(sum(cart.items.values()))]


def apply(cart: Cart, event: Event[ItemAdded | CartPaid]) -> Cart:
    match event.data:
        case ItemAdded(sku, price):
            return Cart({**cart.items, sku: price}, cart.paid)
        case CartPaid():
            return Cart(cart.items, paid=True)


def print_event(event: Event[ItemAdded | CartPaid]) -> None:
    print(f"  stored #{event.position}: {event.aggregate_id} v{event.version} {event.data}")


async def main() -> None:
    config = AggregateConfig(
        name="cart",
        initial_state=Cart(),
        command_handler=handle,
        event_handler=apply,
        events=[ItemAdded, CartPaid],
    )
    store = MemoryStore()
    async with Signal(config, store=store, subscribers=[print_event], telemetry=None) as signal:
        cart = await signal.create("cart-1")
        await cart.handle_command(AddItem("apple", 120))
        await cart.handle_command(AddItem("pear", 95))
        try:
            await cart.handle_command(AddItem("apple", 120))
        except CommandRejected as rejected:
            print(f"  rejected: {rejected.reason}")
        state = await signal.handle_command("cart-1", Pay())
        await signal.drain()
        print(f"cart-1 at version {cart.version}: {state}")

    # Events are stored, never the state: a fresh Signal rebuilds the cart from them.
    async with Signal(config, store=store, telemetry=None) as again:
        rebuilt = await again.aggregate("cart-1")
        print(
            f"rebuilt from {len(await store.read_aggregate('cart', 'cart-1'))} events: "
            f"{rebuilt.state}"
        )


if __name__ == "__main__":
    asyncio.run(main())
