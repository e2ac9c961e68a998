"""Given/when/then checks: what they pass, and what their failures say."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from accounts import Account, Deposit, Deposited, Withdraw, Withdrawn, config

from eventsignal import ConfigurationError, Event, EventSerializationError
from eventsignal.cart.domain import (
    AddToCart,
    Cart,
    CartPaid,
    CompletePurchase,
    Product,
    ProductAdded,
    RemoveFromCart,
    cart_config,
)
from eventsignal.cart.revenue import RevenueTotals, revenue_subscription, revenue_totals
from eventsignal.scenarios import projection, scenario
from eventsignal.stores import SQLiteStore
from eventsignal.subscriptions import ReadModel, Subscription, Transaction

apple = Product("apple", 2, 120)
pear = Product("pear", 1, 95)


def test_a_command_on_a_given_past() -> None:
    state = (
        scenario(cart_config)
        .given(ProductAdded(apple), ProductAdded(pear))
        .when(CompletePurchase())
        .then(CartPaid(335))
    )
    assert state == Cart((apple, pear), paid=True)


def test_without_a_past_the_command_creates_the_aggregate() -> None:
    scenario(cart_config).when(AddToCart(apple)).then(ProductAdded(apple))
    scenario(cart_config).when(CompletePurchase()).then_rejected(match="empty cart")


def test_rejections_and_states() -> None:
    paid = scenario(cart_config).given(ProductAdded(apple), CartPaid(240))
    rejection = paid.when(AddToCart(pear)).then_rejected(match=r"paid and can no longer")
    assert rejection.aggregate_id == "scenario-1"
    paid.then_state(Cart((apple,), paid=True))  # no command: the state the past built
    paid.then_state(lambda cart: cart.paid and cart.total == 240)
    scenario(cart_config).given(ProductAdded(apple)).when(RemoveFromCart("apple")).then_state(
        Cart()
    )


async def test_checks_run_from_async_tests_too() -> None:
    scenario(config()).given(Deposited(5)).when(Withdraw(2)).then(Withdrawn(2))


def test_a_store_of_another_backend(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", migrate=True)
    scenario(config(), store=store).given(Deposited(5)).when(Deposit(1)).then(Deposited(1))


def test_other_events_show_as_a_diff() -> None:
    check = scenario(config()).given(Deposited(5), Deposited(7)).when(Withdraw(3))
    with pytest.raises(AssertionError) as failed:
        check.then(Withdrawn(4))
    assert str(failed.value) == (
        "Withdraw on account 'scenario-1' stored other events than expected:\n"
        "  - expected\n"
        "  + actual\n"
        "  - Withdrawn(amount=4)\n"
        "  + Withdrawn(amount=3)"
    )
    with pytest.raises(
        AssertionError, match=r"(?s)stored other.*- \(no events\)\n  \+ ProductAdded"
    ):
        scenario(cart_config).given(ProductAdded(apple)).when(AddToCart(pear)).then()


def test_wrong_outcomes_say_what_happened_instead() -> None:
    rejected = scenario(config()).when(Withdraw(3))
    with pytest.raises(AssertionError, match=re.escape("was rejected (balance 0 is less than 3)")):
        rejected.then(Withdrawn(3))
    with pytest.raises(AssertionError, match="should have been rejected, but stored:\n  Dep"):
        scenario(config()).when(Deposit(1)).then_rejected()
    with pytest.raises(AssertionError, match="another reason") as other:
        rejected.then_rejected(match="closed")
    assert "'balance 0 is less than 3'" in str(other.value)
    with pytest.raises(AssertionError, match=r"(?s)state after .* differs.*- Account\(bal"):
        scenario(config()).when(Deposit(1)).then_state(Account(balance=2))
    with pytest.raises(AssertionError, match="does not satisfy"):
        scenario(config()).when(Deposit(1)).then_state(lambda account: account.balance > 1)


def test_a_failing_handler_is_not_a_rejection() -> None:
    with pytest.raises(AssertionError, match="but raised TypeError: '<=' not supported"):
        scenario(config()).when(Deposit("5")).then_rejected()  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scenario(config()).when(Deposit("5")).then(Deposited(5))  # type: ignore[arg-type]
    # An event that would not read back fails here as it would in production.
    trusting = config(command_handler=lambda command, state: [Deposited(command.amount)])
    with pytest.raises(EventSerializationError, match=r"\$\.amount"):
        scenario(trusting).when(Deposit("5")).then(Deposited(5))  # type: ignore[arg-type]


def test_given_events_are_stored_as_production_would() -> None:
    # An event the config does not declare cannot be in an aggregate's past.
    with pytest.raises(Exception, match="not one of the events declared"):
        scenario(config()).given(ProductAdded(apple)).then_state(Account())


def test_a_projection_from_events_of_several_aggregates() -> None:
    projection(revenue_subscription).given(
        ProductAdded(apple),
        CartPaid(240),
        ("cart-2", CartPaid(95)),
    ).then(revenue_totals, {"all": RevenueTotals(total=335, paid_carts=2)})
    projection(revenue_subscription).given(ProductAdded(apple)).then(revenue_totals, {})


def test_a_projection_that_differs_or_fails() -> None:
    with pytest.raises(AssertionError) as failed:
        projection(revenue_subscription).given(CartPaid(1)).then(
            revenue_totals, {"all": RevenueTotals(total=2, paid_carts=1)}
        )
    assert "read model 'cart_revenue' of subscription 'cart-revenue' differs" in str(failed.value)
    assert "- {'all': RevenueTotals(total=2, paid_carts=1)}" in str(failed.value)
    assert "+ {'all': RevenueTotals(total=1, paid_carts=1)}" in str(failed.value)

    async def broken(event: Event[object], tx: Transaction) -> None:
        raise RuntimeError("no luck")

    failing = Subscription(
        name="broken", handler=broken, configs=[cart_config], max_attempts=1, retry_delay=0
    )
    with pytest.raises(AssertionError, match=r"CartPaid of cart 'scenario-1' v1: .*no luck"):
        projection(failing).given(CartPaid(1)).run()


def test_a_given_event_no_subscribed_type_declares() -> None:
    @dataclass(frozen=True)
    class Stray:
        pass

    names: ReadModel[dict[str, int]] = ReadModel("names")
    with pytest.raises(ConfigurationError, match="Stray is declared by none"):
        projection(revenue_subscription).given(Stray()).then(names, {})
