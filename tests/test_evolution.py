"""Reading events written by older revisions of the event classes, through upcasters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from eventsignal import AggregateConfig, Event, EventSerializationError, Signal, UnknownEventType
from eventsignal.domain.evolution import Upcaster
from eventsignal.stores import EventStore, MemoryStore

# Revision 1 of the shop's events, as an old release wrote them.


@dataclass(frozen=True)
class ItemAddedV1:
    name: str  # later renamed to sku
    price: str  # later an int of cents


@dataclass(frozen=True)
class Discounted:  # later split into PriceChanged + CouponUsed
    sku: str
    price: int
    coupon: str


# The current classes.


@dataclass(frozen=True)
class ItemAdded:
    __revision__: ClassVar[int] = 3
    sku: str
    price: int
    quantity: int  # added in revision 3, old rows get 1


@dataclass(frozen=True)
class PriceChanged:
    sku: str
    price: int


@dataclass(frozen=True)
class CouponUsed:
    code: str


@dataclass(frozen=True)
class Basket:
    items: dict[str, tuple[int, int]] = field(default_factory=dict)
    coupons: tuple[str, ...] = ()


def apply(basket: Basket, event: Event[Any]) -> Basket:
    match event.data:
        case ItemAdded(sku, price, quantity):
            return Basket({**basket.items, sku: (price, quantity)}, basket.coupons)
        case PriceChanged(sku, price):
            return Basket({**basket.items, sku: (price, basket.items[sku][1])}, basket.coupons)
        case CouponUsed(code):
            return Basket(basket.items, (*basket.coupons, code))
    raise TypeError(event.name)


def old_handle(command: Any, state: Any) -> list[Any]:
    return list(command)


def new_handle(command: Any, state: Basket) -> list[Any]:
    return list(command)


OLD = AggregateConfig(
    name="basket",
    initial_state=Basket(),
    command_handler=old_handle,
    event_handler=lambda state, event: state,
    events={"ItemAdded": ItemAddedV1, "Discounted": Discounted},
)

UPCASTERS = [
    # revision 1 -> 2: field renamed, type changed
    Upcaster(
        "ItemAdded",
        1,
        lambda d: {"sku": d["name"], "price": round(float(d["price"]) * 100)},
    ),
    # revision 2 -> 3: field added with a default
    Upcaster("ItemAdded", 2, lambda d: {**d, "quantity": 1}),
    # renamed and split
    Upcaster(
        "Discounted",
        1,
        lambda d: [
            ("PriceChanged", 1, {"sku": d["sku"], "price": d["price"]}),
            ("CouponUsed", 1, {"code": d["coupon"]}),
        ],
    ),
]

NEW = AggregateConfig(
    name="basket",
    initial_state=Basket(),
    command_handler=new_handle,
    event_handler=apply,
    events=[ItemAdded, PriceChanged, CouponUsed],
    upcasters=UPCASTERS,
)


async def write_old_history(store: EventStore) -> None:
    async with Signal(OLD, store=store) as old:
        await old.create("b")
        await old.handle_command("b", [ItemAddedV1("tea", "3.50")])
        await old.handle_command("b", [Discounted("tea", 300, "SPRING")])


async def test_old_rows_are_upcast_to_current_classes() -> None:
    store = MemoryStore()
    await write_old_history(store)
    async with Signal(NEW, store=store) as new:
        basket = await new.aggregate("b")
        assert basket.version == 2
        assert basket.state == Basket({"tea": (300, 1)}, ("SPRING",))
        # New rows are written at the current revision, beside the old ones.
        await new.handle_command("b", [ItemAdded("jam", 450, 2)])
        events = await new.events("b")
    assert [(e.version, type(e.data).__name__) for e in events] == [
        (1, "ItemAdded"),
        (2, "PriceChanged"),
        (2, "CouponUsed"),
        (3, "ItemAdded"),
    ]
    stored = await store.read_aggregate("basket", "b")
    assert [e.name for e in stored] == ["ItemAdded", "Discounted", "ItemAdded@3"]
    assert stored[0].data == b'{"name":"tea","price":"3.50"}'  # never rewritten


async def test_missing_upcaster_names_event_version_and_aggregate() -> None:
    store = MemoryStore()
    await write_old_history(store)
    partial = AggregateConfig(
        name="basket",
        initial_state=Basket(),
        command_handler=new_handle,
        event_handler=apply,
        events=[ItemAdded, PriceChanged, CouponUsed],
        upcasters=UPCASTERS[:1],  # 1 -> 2 only
    )
    async with Signal(partial, store=store) as new:
        with pytest.raises(EventSerializationError) as missing:
            await new.aggregate("b")
    error = missing.value
    assert (error.aggregate_id, error.version, error.event_name) == ("b", 1, "ItemAdded")
    assert "no upcaster reads 'ItemAdded' revision 2" in str(error)


async def test_unknown_event_name_without_upcaster() -> None:
    store = MemoryStore()
    await write_old_history(store)
    only_items = AggregateConfig(
        name="basket",
        initial_state=Basket(),
        command_handler=new_handle,
        event_handler=apply,
        events=[ItemAdded],
        upcasters=UPCASTERS[:2],
    )
    async with Signal(only_items, store=store) as new:
        with pytest.raises(UnknownEventType) as unknown:
            await new.aggregate("b")
    assert (unknown.value.version, unknown.value.event_name) == (2, "Discounted")


def test_duplicate_upcasters_are_refused() -> None:
    with pytest.raises(ValueError, match="two upcasters"):
        AggregateConfig(
            name="basket",
            initial_state=Basket(),
            command_handler=new_handle,
            event_handler=apply,
            events=[ItemAdded],
            upcasters=[UPCASTERS[0], UPCASTERS[0]],
        )
