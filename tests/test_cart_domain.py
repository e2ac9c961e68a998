"""The cart's rules (as given/when/then scenarios), its history and its revenue, through Signal
on an in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventsignal import AggregateNotFound, CommandRejected, Signal, SignalError
from eventsignal.cart import (
    AddToCart,
    Cart,
    CartPaid,
    CompletePurchase,
    Product,
    ProductAdded,
    RemoveFromCart,
    cart_config,
)
from eventsignal.cart.domain import (
    MAX_PRICE,
    MAX_PRODUCTS,
    MAX_QUANTITY,
    CartCommand,
    ProductRemoved,
)
from eventsignal.cart.revenue import RevenueTotals, read_revenue, revenue_subscription
from eventsignal.scenarios import scenario
from eventsignal.stores import MemoryStore
from eventsignal.subscriptions import SubscriptionRunner, rebuild

CartSignal = Signal[Cart, CartCommand]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def signal(store: MemoryStore) -> AsyncIterator[CartSignal]:
    async with Signal(cart_config, store=store, telemetry=None) as running:
        yield running


async def test_products_are_added_and_removed_in_order(signal: CartSignal) -> None:
    cart = await signal.create("c1")
    await cart.handle_command(AddToCart(Product("apple", 3, 120)))
    await cart.handle_command(AddToCart(Product("pear", 1, 95)))
    await cart.handle_command(AddToCart(Product("fig", 2, 10)))
    state = await cart.handle_command(RemoveFromCart("pear"))
    assert [p.sku for p in state.products] == ["apple", "fig"]
    assert state.total == 3 * 120 + 2 * 10
    assert cart.version == 4


apple = Product("apple", 1, 120)


def test_an_existing_sku_is_rejected() -> None:
    scenario(cart_config).given(ProductAdded(apple)).when(
        AddToCart(Product("apple", 2, 99))
    ).then_rejected(match="apple is already in the cart")


def test_removing_a_missing_sku_is_rejected() -> None:
    scenario(cart_config).when(RemoveFromCart("kiwi")).then_rejected(match="kiwi is not in")


async def test_paying_records_the_total_once(signal: CartSignal, store: MemoryStore) -> None:
    cart = await signal.create("c1")
    await cart.handle_command(AddToCart(Product("apple", 3, 120)))
    state = await cart.handle_command(CompletePurchase())
    assert state.paid
    with pytest.raises(CommandRejected, match="already paid"):
        await cart.handle_command(CompletePurchase())
    events = await signal.events("c1")
    assert [e.data for e in events][-1] == CartPaid(360)
    assert len(await store.read_aggregate("cart", "c1")) == 2


def test_an_empty_cart_cannot_be_paid() -> None:
    scenario(cart_config).when(CompletePurchase()).then_rejected(match="empty cart")
    scenario(cart_config).given(ProductAdded(apple), ProductRemoved("apple")).when(
        CompletePurchase()
    ).then_rejected(match="empty cart")


def test_a_cart_whose_total_is_zero_cannot_be_paid() -> None:
    sample = ProductAdded(Product("free-sample", 3, 0))
    with_sample = scenario(cart_config).given(sample)
    with_sample.when(CompletePurchase()).then_rejected(match=r"total is 0\.00 cannot be paid")
    with_sample.given(ProductAdded(Product("apple", 1, 1))).when(CompletePurchase()).then(
        CartPaid(1)  # a free product may stay
    )


def test_a_paid_cart_no_longer_changes() -> None:
    paid = scenario(cart_config).given(ProductAdded(apple), CartPaid(120))
    for command in (AddToCart(Product("pear", 1, 95)), RemoveFromCart("apple")):
        paid.when(command).then_rejected(match="paid and can no longer change")
    paid.when(CompletePurchase()).then_rejected(match="already paid")


async def test_free_products_are_allowed(signal: CartSignal) -> None:
    cart = await signal.create("c1")
    state = await cart.handle_command(AddToCart(Product("sticker", 5, 0)))
    assert state.total == 0


@pytest.mark.parametrize(
    ("product", "reason"),
    [
        (Product("", 1, 1), "sku must not be empty"),
        (Product("   ", 1, 1), "sku must not be empty"),
        (Product("x" * 101, 1, 1), "101 characters long"),
        (Product("a\nb", 1, 1), "control characters"),
        (Product("apple", 0, 1), "quantity"),
        (Product("apple", -3, 1), "quantity"),
        (Product("apple", MAX_QUANTITY + 1, 1), "quantity"),
        (Product("apple", 1, -1), "price"),
        (Product("apple", 1, MAX_PRICE + 1), "price"),
    ],
)
async def test_products_out_of_bounds_are_rejected(
    signal: CartSignal, product: Product, reason: str
) -> None:
    cart = await signal.create("c1")
    with pytest.raises(CommandRejected, match=reason):
        await cart.handle_command(AddToCart(product))
    assert cart.version == 0


async def test_the_largest_cart_still_has_an_exact_total(signal: CartSignal) -> None:
    cart = await signal.create("c1")
    for n in range(MAX_PRODUCTS):
        await cart.handle_command(AddToCart(Product(f"sku-{n}", MAX_QUANTITY, MAX_PRICE)))
    with pytest.raises(CommandRejected, match=f"at most {MAX_PRODUCTS} products"):
        await cart.handle_command(AddToCart(Product("one-more", 1, 1)))
    state = await cart.handle_command(CompletePurchase())
    assert state.total == MAX_PRODUCTS * MAX_QUANTITY * MAX_PRICE
    assert state.total < 2**53  # exact as a JSON number in any client
    events = await signal.events("c1")
    assert events[-1].data == CartPaid(MAX_PRODUCTS * MAX_QUANTITY * MAX_PRICE)


async def test_a_cart_is_rebuilt_from_its_events(store: MemoryStore) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as first:
        cart = await first.create("c1")
        await cart.handle_command(AddToCart(Product("apple", 2, 120)))
        await cart.handle_command(AddToCart(Product("pear", 1, 95)))
        await cart.handle_command(RemoveFromCart("apple"))
        before = cart.state
    async with Signal(cart_config, store=store, telemetry=None) as second:
        again = await second.aggregate("c1")
        assert again.state == before
        assert again.version == 3


async def test_state_at_replays_up_to_a_version(signal: CartSignal) -> None:
    cart = await signal.create("c1")
    await cart.handle_command(AddToCart(Product("apple", 2, 120)))
    await cart.handle_command(AddToCart(Product("pear", 1, 95)))
    await cart.handle_command(RemoveFromCart("apple"))
    await cart.handle_command(CompletePurchase())
    assert (await signal.state_at("c1", version=0)).state == Cart()
    assert (await signal.state_at("c1", version=1)).state == Cart((Product("apple", 2, 120),))
    at_two = (await signal.state_at("c1", version=2)).state
    assert [p.sku for p in at_two.products] == ["apple", "pear"]
    assert not at_two.paid
    assert (await signal.state_at("c1", version=4)).state == cart.state
    with pytest.raises(SignalError, match="versions 0 to 4, not 5"):
        await signal.state_at("c1", version=5)
    assert cart.version == 4  # reading the past changed nothing


async def test_history_lists_decoded_events(signal: CartSignal) -> None:
    cart = await signal.create("c1")
    await cart.handle_command(AddToCart(Product("apple", 2, 120)))
    await cart.handle_command(CompletePurchase())
    events = await signal.events("c1")
    assert [(e.version, e.name) for e in events] == [(1, "ProductAdded"), (2, "CartPaid")]
    assert events[0].data == ProductAdded(Product("apple", 2, 120))


async def test_history_of_an_unknown_cart_is_not_found(signal: CartSignal) -> None:
    with pytest.raises(AggregateNotFound):
        await signal.events("nobody")
    await signal.create("fresh")
    assert await signal.events("fresh") == []


async def _paid_cart(signal: CartSignal, cart_id: str, *prices: int) -> None:
    cart = await signal.create(cart_id)
    for n, price in enumerate(prices):
        await cart.handle_command(AddToCart(Product(f"sku-{n}", 1, price)))
    await cart.handle_command(CompletePurchase())


async def test_revenue_counts_every_paid_cart_once(store: MemoryStore) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as one:
        await _paid_cart(one, "a", 100, 250)
        unpaid = await one.create("b")
        await unpaid.handle_command(AddToCart(Product("x", 1, 999)))
    async with SubscriptionRunner(revenue_subscription, store):
        async with Signal(cart_config, store=store, telemetry=None) as other:
            await _paid_cart(other, "c", 5)
        totals, fresh = await read_revenue(store)
    assert fresh
    assert totals == RevenueTotals(total=355, paid_carts=2)


async def test_revenue_is_kept_across_restarts(store: MemoryStore) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        async with SubscriptionRunner(revenue_subscription, store):
            await _paid_cart(signal, "a", 700)
            assert (await read_revenue(store))[0].total == 700
        await _paid_cart(signal, "b", 300)  # paid while nothing counts
        async with SubscriptionRunner(revenue_subscription, store):
            totals, fresh = await read_revenue(store)
    assert fresh
    assert totals == RevenueTotals(total=1000, paid_carts=2)


async def test_revenue_without_a_runner_says_it_is_stale(store: MemoryStore) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await _paid_cart(signal, "a", 700)
    totals, fresh = await read_revenue(store, within=0.05)
    assert not fresh
    assert totals == RevenueTotals()


async def test_a_rebuild_recounts_from_the_first_event(store: MemoryStore) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        for n in range(30):
            await _paid_cart(signal, f"cart-{n}", 1, 2, 3)
    async with SubscriptionRunner(revenue_subscription, store):
        first, _ = await read_revenue(store)
    progress = await rebuild(store, revenue_subscription)
    assert progress.done == progress.total == await store.head_position()
    again, _ = await read_revenue(store, within=0.05)
    assert first == again == RevenueTotals(total=30 * 6, paid_carts=30)
