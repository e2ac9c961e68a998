"""The benchmark workload: a shopping cart, written idiomatically for both libraries.

Per cart a client sends five commands: open the cart with a first product, add two more, remove
one, pay. Prices are in cents. Each library opens the cart its own idiomatic way, in one write:
eventsignal with a genesis command (``signal.create(id, command)``), the peer by creating the
aggregate, adding the product and saving both events together. Every cart follows the same
deterministic plan, so both libraries do the same work and store the same facts (the peer stores
one more event per cart: its creation event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from eventsignal import AggregateConfig, CommandRejected, Event, Signal

PRODUCTS: tuple[tuple[str, int], ...] = (
    ("apple", 120),
    ("pear", 95),
    ("plum", 240),
    ("kiwi", 60),
    ("mango", 310),
    ("grape", 410),
    ("lemon", 45),
)
COMMANDS_PER_CART = 5  # open with a product, add x2, remove, pay
EVENTS_PER_CART = 5  # eventsignal's; the peer adds its creation event


def cart_plan(number: int) -> tuple[list[tuple[str, int]], str]:
    """The three products cart ``number`` gets and the one it gives back."""
    first = number % len(PRODUCTS)
    added = [PRODUCTS[(first + step) % len(PRODUCTS)] for step in range(3)]
    return added, added[number % 3][0]


# eventsignal: commands, events and state are frozen msgspec Structs; two pure functions.


class AddToCart(msgspec.Struct, frozen=True):
    sku: str
    price: int


class RemoveFromCart(msgspec.Struct, frozen=True):
    sku: str


class CompletePurchase(msgspec.Struct, frozen=True):
    pass


class ItemAdded(msgspec.Struct, frozen=True):
    sku: str
    price: int


class ItemRemoved(msgspec.Struct, frozen=True):
    sku: str


class PurchaseCompleted(msgspec.Struct, frozen=True):
    total: int


class Cart(msgspec.Struct, frozen=True):
    items: dict[str, int] = {}
    paid: bool = False


CartCommand = AddToCart | RemoveFromCart | CompletePurchase
CartEvent = ItemAdded | ItemRemoved | PurchaseCompleted


def handle(command: CartCommand, cart: Cart) -> list[CartEvent]:
    if cart.paid:
        raise CommandRejected("the cart is already paid")
    match command:
        case AddToCart(sku, price):
            if sku in cart.items:
                raise CommandRejected(f"{sku} is already in the cart")
            return [ItemAdded(sku, price)]
        case RemoveFromCart(sku):
            if sku not in cart.items:
                raise CommandRejected(f"{sku} is not in the cart")
            return [ItemRemoved(sku)]
        case CompletePurchase():
            if not cart.items:
                raise CommandRejected("the cart is empty")
            return [PurchaseCompleted(sum(cart.items.values()))]
    raise CommandRejected(f"unknown command {command!r}")


def apply(cart: Cart, event: Event[CartEvent]) -> Cart:
    match event.data:
        case ItemAdded(sku, price):
            return Cart({**cart.items, sku: price}, cart.paid)
        case ItemRemoved(sku):
            items = dict(cart.items)
            del items[sku]
            return Cart(items, cart.paid)
        case PurchaseCompleted():
            return Cart(cart.items, True)
    return cart


CART: AggregateConfig[Cart, CartCommand] = AggregateConfig(
    name="cart",
    initial_state=Cart(),
    command_handler=handle,
    event_handler=apply,
    events=[ItemAdded, ItemRemoved, PurchaseCompleted],
    rebuild_envelopes=False,  # apply reads event.data alone
)


def cart_commands(number: int) -> list[CartCommand]:
    """The five commands of cart ``number``; the first one opens it."""
    added, removed = cart_plan(number)
    commands: list[CartCommand] = [AddToCart(sku, price) for sku, price in added]
    commands.append(RemoveFromCart(removed))
    commands.append(CompletePurchase())
    return commands


async def run_cart(
    signal: Signal[Any, Any], cart_id: str, number: int, *, genesis: bool = True
) -> None:
    """Send cart ``number``'s five commands through ``signal``; the first opens it (in two
    writes without ``genesis``, for a store whose ``create`` takes no events)."""
    opening, *commands = cart_commands(number)
    if genesis:
        await signal.create(cart_id, opening)
    else:
        await signal.create(cart_id)
        await signal.handle_command(cart_id, opening)
    for command in commands:
        await signal.handle_command(cart_id, command)


# eventsourcing: an Aggregate with explicit event classes (about 15% faster in its command path
# than the @event decorator, which maps call arguments to event fields on every call), and an
# Application with one method per command.


class CartError(Exception):
    pass


class PeerCart(Aggregate):
    class Opened(Aggregate.Created):
        pass

    class ItemAdded(Aggregate.Event):
        sku: str
        price: int

        def apply(self, aggregate: Any) -> None:
            aggregate.items[self.sku] = self.price

    class ItemRemoved(Aggregate.Event):
        sku: str

        def apply(self, aggregate: Any) -> None:
            del aggregate.items[self.sku]

    class PurchaseCompleted(Aggregate.Event):
        total: int

        def apply(self, aggregate: Any) -> None:
            aggregate.paid = True

    def __init__(self) -> None:
        self.items: dict[str, int] = {}
        self.paid = False

    @classmethod
    def open(cls) -> PeerCart:
        return cls._create(cls.Opened)

    def add(self, sku: str, price: int) -> None:
        if self.paid:
            raise CartError("the cart is already paid")
        if sku in self.items:
            raise CartError(f"{sku} is already in the cart")
        self.trigger_event(self.ItemAdded, sku=sku, price=price)

    def remove(self, sku: str) -> None:
        if self.paid:
            raise CartError("the cart is already paid")
        if sku not in self.items:
            raise CartError(f"{sku} is not in the cart")
        self.trigger_event(self.ItemRemoved, sku=sku)

    def pay(self) -> None:
        if self.paid:
            raise CartError("the cart is already paid")
        if not self.items:
            raise CartError("the cart is empty")
        self.trigger_event(self.PurchaseCompleted, total=sum(self.items.values()))


class PeerShop(Application[UUID]):
    """The peer's application service: load from the repository, call, save."""

    def open_cart(self, sku: str, price: int) -> UUID:
        cart = PeerCart.open()
        cart.add(sku, price)
        self.save(cart)
        return cart.id

    def add_to_cart(self, cart_id: UUID, sku: str, price: int) -> None:
        cart: PeerCart = self.repository.get(cart_id)
        cart.add(sku, price)
        self.save(cart)

    def remove_from_cart(self, cart_id: UUID, sku: str) -> None:
        cart: PeerCart = self.repository.get(cart_id)
        cart.remove(sku)
        self.save(cart)

    def complete_purchase(self, cart_id: UUID) -> None:
        cart: PeerCart = self.repository.get(cart_id)
        cart.pay()
        self.save(cart)

    def cart(self, cart_id: UUID) -> PeerCart:
        return self.repository.get(cart_id)


def run_peer_cart(shop: PeerShop, number: int) -> None:
    """Send one cart's five commands through the peer application."""
    added, removed = cart_plan(number)
    (first_sku, first_price), *more = added
    cart_id = shop.open_cart(first_sku, first_price)
    for sku, price in more:
        shop.add_to_cart(cart_id, sku, price)
    shop.remove_from_cart(cart_id, removed)
    shop.complete_purchase(cart_id)


def peer_env(
    cache_size: int,
    settings: Mapping[str, str],
    *,
    fastforward: bool = True,
    deepcopy: bool = True,
) -> dict[str, str]:
    """Settings for a peer application with its aggregate cache on."""
    env = {
        "AGGREGATE_CACHE_MAXSIZE": str(cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "y" if fastforward else "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y" if deepcopy else "n",
    }
    env.update(settings)
    return env
