"""The shopping cart aggregate: products go in and out until the cart is paid, once.

Every rule lives here, not in the web layer, so any caller (the web app, a script, a test) gets
the same answers. Bounds are part of the rules: they keep a hostile form post from storing a
10 kB sku or a price whose total no longer fits a JSON number exactly (totals stay below 2**53).

An empty cart cannot be paid, nor one whose total is 0 (free products may be in it, but there is
nothing to pay for): a payment of nothing is almost always a double click or a bug, and a
zero-value ``CartPaid`` would count as a sale in the revenue.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from eventsignal import AggregateConfig, CommandRejected, Event

MAX_SKU_LENGTH = 100
MAX_QUANTITY = 10_000
MAX_PRICE = 100_000_000  # cents per unit: one million in the currency
MAX_PRODUCTS = 100


class Product(msgspec.Struct, frozen=True):
    """A line of the cart: ``quantity`` units of ``sku`` at ``price`` cents each."""

    sku: str
    quantity: int
    price: int

    @property
    def subtotal(self) -> int:
        return self.quantity * self.price


# Commands


class AddToCart(msgspec.Struct, frozen=True):
    product: Product


class RemoveFromCart(msgspec.Struct, frozen=True):
    sku: str


class CompletePurchase(msgspec.Struct, frozen=True):
    pass


CartCommand = AddToCart | RemoveFromCart | CompletePurchase


# Events


class ProductAdded(msgspec.Struct, frozen=True):
    product: Product


class ProductRemoved(msgspec.Struct, frozen=True):
    sku: str


class CartPaid(msgspec.Struct, frozen=True):
    total: int


CartEvent = ProductAdded | ProductRemoved | CartPaid


@dataclass(frozen=True, slots=True)
class Cart:
    """The state of one cart. Products keep the order they were added in."""

    products: tuple[Product, ...] = ()
    paid: bool = False

    @property
    def total(self) -> int:
        return sum(p.subtotal for p in self.products)

    def find(self, sku: str) -> Product | None:
        for product in self.products:
            if product.sku == sku:
                return product
        return None


def check_sku(sku: object) -> str:
    """Return ``sku`` if the cart accepts it, else raise :class:`CommandRejected` saying why."""
    if not isinstance(sku, str) or not sku.strip():
        raise CommandRejected("the sku must not be empty")
    if len(sku) > MAX_SKU_LENGTH:
        raise CommandRejected(
            f"the sku is {len(sku)} characters long; at most {MAX_SKU_LENGTH} are allowed"
        )
    if not sku.isprintable():
        raise CommandRejected("the sku must not contain control characters")
    return sku


def check_product(product: Product) -> Product:
    """Return ``product`` if its sku, quantity and price are within bounds, else reject it."""
    check_sku(product.sku)
    quantity, price = product.quantity, product.price
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        raise CommandRejected(f"the quantity must be a whole number from 1 to {MAX_QUANTITY}")
    if type(price) is not int or not 0 <= price <= MAX_PRICE:
        raise CommandRejected(f"the price must be a whole number of cents from 0 to {MAX_PRICE}")
    return product


def handle(command: CartCommand, cart: Cart) -> list[CartEvent]:
    """Decide what a command does to a cart: the events to store, or a rejection."""
    if cart.paid:
        if isinstance(command, CompletePurchase):
            raise CommandRejected("the cart is already paid")
        raise CommandRejected("the cart is paid and can no longer change")
    match command:
        case AddToCart(product):
            check_product(product)
            if cart.find(product.sku) is not None:
                raise CommandRejected(f"{product.sku} is already in the cart")
            if len(cart.products) >= MAX_PRODUCTS:
                raise CommandRejected(f"a cart holds at most {MAX_PRODUCTS} products")
            return [ProductAdded(product)]
        case RemoveFromCart(sku):
            if cart.find(sku) is None:
                raise CommandRejected(f"{sku} is not in the cart")
            return [ProductRemoved(sku)]
        case CompletePurchase():
            if not cart.products:
                raise CommandRejected("an empty cart cannot be paid")
            if cart.total == 0:
                raise CommandRejected("a cart whose total is 0.00 cannot be paid")
            return [CartPaid(cart.total)]
    raise CommandRejected(f"a cart does not understand {type(command).__name__}")


def apply(cart: Cart, event: Event[CartEvent]) -> Cart:
    """The cart after an event; pure, since it runs again on every rebuild."""
    match event.data:
        case ProductAdded(product):
            return Cart((*cart.products, product), cart.paid)
        case ProductRemoved(sku):
            return Cart(tuple(p for p in cart.products if p.sku != sku), cart.paid)
        case CartPaid():
            return Cart(cart.products, paid=True)
    return cart


cart_config: AggregateConfig[Cart, CartCommand] = AggregateConfig(
    name="cart",
    initial_state=Cart(),
    command_handler=handle,
    event_handler=apply,
    events=[ProductAdded, ProductRemoved, CartPaid],
)
