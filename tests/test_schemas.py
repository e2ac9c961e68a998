"""Event schemas: what the export describes, and which changes the check lets through."""

from __future__ import annotations

import itertools
import json
import sys
import types
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from click.testing import CliRunner

from eventsignal import AggregateConfig, Event
from eventsignal.cart.domain import CartPaid, Product, ProductAdded, cart_config
from eventsignal.cli import main
from eventsignal.domain.evolution import Upcaster
from eventsignal.publishing.mapping import CloudEventMapper
from eventsignal.schemas import asyncapi_document, check_schema, command_types, export_schema
from eventsignal.serialization import EventSerializer

ROOT = Path(__file__).resolve().parent.parent
_modules = itertools.count()

# Revision 1 of an order's events; each case below edits this source into a revision 2.
BASE = """
class Item(msgspec.Struct, frozen=True):
    sku: str
    price: int

class Placed(msgspec.Struct, frozen=True, kw_only=True):
    order: str
    amount: int
    items: list[Item]
    note: str = ""

class Cancelled(msgspec.Struct, frozen=True):
    order: str
"""


def order_config(source: str, upcasters: tuple[Upcaster, ...] = ()) -> AggregateConfig[int, Any]:
    # A module of its own, where msgspec finds the names the annotations use.
    module = types.ModuleType(f"orders_{next(_modules)}")
    sys.modules[module.__name__] = module
    module.msgspec = msgspec  # type: ignore[attr-defined]
    exec(source, module.__dict__)
    namespace = module.__dict__

    def handle(command: Any, state: int) -> list[Any]:
        return []

    def apply(state: int, event: Event[Any]) -> int:
        return state

    events = [namespace[n] for n in ("Placed", "Cancelled", "Shipped") if n in namespace]
    return AggregateConfig(
        name="order",
        initial_state=0,
        command_handler=handle,
        event_handler=apply,
        events=events,
        upcasters=upcasters,
    )


def up(event: str, revision: int) -> Upcaster:
    return Upcaster(event, revision, lambda payload: payload)


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


BREAKING: list[tuple[str, str, tuple[Upcaster, ...], list[tuple[str, str, str]]]] = [
    (
        "removed field",
        edit("    amount: int\n", ""),
        (),
        [("Placed", "removed field", "amount")],
    ),
    (
        "changed type",
        edit("    amount: int\n", "    amount: str\n"),
        (),
        [("Placed", "changed type", "amount")],
    ),
    (
        "changed type of a nested field",
        edit("    price: int\n", "    price: float\n"),
        (),
        [("Placed", "changed type", "items[].price")],
    ),
    (
        "newly required field",
        edit("    amount: int\n", "    amount: int\n    currency: str\n"),
        (),
        [("Placed", "newly required field", "currency")],
    ),
    (
        "a default dropped",
        edit('    note: str = ""\n', "    note: str\n"),
        (),
        [("Placed", "newly required field", "note")],
    ),
    (
        "removed event",
        edit("class Cancelled(msgspec.Struct, frozen=True):\n    order: str\n", ""),
        (),
        [("Cancelled", "removed event", "")],
    ),
    (
        "revision bumped without an upcaster",
        edit("    amount: int\n", "    amount: str\n").replace(
            "class Placed(msgspec.Struct, frozen=True, kw_only=True):\n",
            "class Placed(msgspec.Struct, frozen=True, kw_only=True):\n    __revision__ = 2\n",
        ),
        (),
        [("Placed", "revision", ""), ("Placed", "changed type", "amount")],
    ),
]

COMPATIBLE: list[tuple[str, str, tuple[Upcaster, ...], list[str]]] = [
    ("unchanged", BASE, (), []),
    (
        "added optional field",
        edit("    amount: int\n", '    amount: int\n    currency: str = "EUR"\n'),
        (),
        ["added field"],
    ),
    (
        "widened type",
        edit("    amount: int\n", "    amount: int | float\n"),
        (),
        ["widened type"],
    ),
    (
        "default added",
        edit("    order: str\n    amount", '    order: str = ""\n    amount'),
        (),
        ["no longer required"],
    ),
    (
        "added event",
        BASE + "\nclass Shipped(msgspec.Struct, frozen=True):\n    order: str\n",
        (),
        ["added event"],
    ),
    (
        "fields reordered, documented",
        edit(
            "    order: str\n    amount: int\n",
            '    """An order was placed."""\n    amount: int\n    order: str\n',
        ),
        (),
        [],
    ),
    (
        "breaking change with a revision bump read by an upcaster",
        edit("    amount: int\n", "    amount: str\n").replace(
            "class Placed(msgspec.Struct, frozen=True, kw_only=True):\n",
            "class Placed(msgspec.Struct, frozen=True, kw_only=True):\n    __revision__ = 2\n",
        ),
        (up("Placed", 1),),
        ["changed type"],
    ),
    (
        "removed event read by an upcaster (renamed)",
        edit("class Cancelled(", "class Withdrawn(").replace('"Cancelled"', '"Withdrawn"'),
        (up("Cancelled", 1),),
        ["removed event"],
    ),
]


def _old() -> dict[str, Any]:
    # Through JSON, as a committed file would be read.
    document: dict[str, Any] = json.loads(json.dumps(export_schema([order_config(BASE)])))
    return document


@pytest.mark.parametrize(
    ("source", "upcasters", "expected"),
    [pytest.param(s, u, e, id=name) for name, s, u, e in BREAKING],
)
def test_each_breaking_change_fails(
    source: str, upcasters: tuple[Upcaster, ...], expected: list[tuple[str, str, str]]
) -> None:
    changes = check_schema(_old(), [order_config(source, upcasters)])
    assert sorted((c.event, c.kind, c.path) for c in changes if c.fails) == sorted(expected)


@pytest.mark.parametrize(
    ("source", "upcasters", "kinds"),
    [pytest.param(s, u, k, id=name) for name, s, u, k in COMPATIBLE],
)
def test_compatible_changes_pass(
    source: str, upcasters: tuple[Upcaster, ...], kinds: list[str]
) -> None:
    changes = check_schema(_old(), [order_config(source, upcasters)])
    assert [c for c in changes if c.fails] == []
    assert sorted(c.kind for c in changes) == sorted(kinds)
    for change in changes:
        assert str(change).startswith("handled: " if change.breaking else "compatible: ")


def test_fields_that_may_now_be_none_are_widened() -> None:
    optional = edit("    items: list[Item]\n", "    items: list[Item] | None\n").replace(
        "    amount: int\n", "    amount: int | None\n"
    )
    changes = check_schema(_old(), [order_config(optional)])
    assert {(c.path, c.kind, c.fails) for c in changes} == {
        ("amount", "widened type", False),
        ("items", "widened type", False),
    }


def test_the_explanation_names_the_change() -> None:
    (change,) = check_schema(_old(), [order_config(BREAKING[1][1])])
    assert str(change) == "BREAKING: order Placed.amount: changed type (integer -> string)"
    bumped = check_schema(_old(), [order_config(BREAKING[-1][1])])
    assert "bumped from 1 to 2, but no upcaster reads revision 1" in str(bumped[0])


def test_the_export_describes_events_and_commands_as_stored() -> None:
    document = export_schema([cart_config])
    cart = document["aggregates"]["cart"]
    assert set(cart["events"]) == {"ProductAdded", "ProductRemoved", "CartPaid"}
    assert set(cart["commands"]) == {"AddToCart", "RemoveFromCart", "CompletePurchase"}
    assert [c.__name__ for c in command_types(cart_config)] == list(cart["commands"])
    # What the serializer stores validates against the event's schema, and a wrong shape not.
    schema = {**cart["events"]["ProductAdded"]["schema"], "$defs": document["$defs"]}
    _, data = EventSerializer("cart", cart_config.event_types).encode(
        ProductAdded(Product("apple", 2, 120)), aggregate_id="c", version=1
    )
    jsonschema.validate(json.loads(data), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"product": {"sku": "apple", "quantity": "2", "price": 1}}, schema)


def test_the_asyncapi_document_describes_cloudevents() -> None:
    document = asyncapi_document([cart_config])
    assert document["asyncapi"] == "3.0.0"
    message = document["components"]["messages"]["cart.CartPaid"]
    assert message["payload"]["properties"]["type"] == {"const": "cart.CartPaid"}
    assert document["channels"]["cart"]["messages"]["CartPaid"] == {
        "$ref": "#/components/messages/cart.CartPaid"
    }
    (operation,) = document["operations"].values()
    assert operation["action"] == "send"
    payload = {**message["payload"], "components": document["components"]}
    cloud_event = {
        "specversion": "1.0",
        "id": "0192",
        "source": "/carts",
        "type": "cart.CartPaid",
        "subject": "c-1",
        "data": {"total": 120},
    }
    jsonschema.validate(cloud_event, payload)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**cloud_event, "data": {"total": "120"}}, payload)


def test_what_a_publisher_sends_is_what_the_asyncapi_document_says() -> None:
    document = asyncapi_document([cart_config])
    message = document["components"]["messages"]["cart.CartPaid"]
    payload = {**message["payload"], "components": document["components"]}
    event = Event(
        id=uuid.uuid4(),
        aggregate_name="cart",
        aggregate_id="c-1",
        version=4,
        name="CartPaid",
        timestamp=datetime.now(UTC),
        position=1234,
        data=CartPaid(total=120),
        metadata={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    )
    sent = CloudEventMapper()(event)
    assert sent is not None
    envelope = json.loads(sent.structured())
    assert envelope["aggregateversion"] == 4
    jsonschema.validate(envelope, payload)


def test_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("orders.py").write_text("import msgspec\n" + BASE)
    Path("orders_config.py").write_text(
        "from eventsignal import AggregateConfig\nimport orders\n"
        "config = AggregateConfig(name='order', initial_state=0,"
        " command_handler=lambda c, s: [], event_handler=lambda s, e: s,"
        " events=[orders.Placed, orders.Cancelled])\n"
    )
    runner = CliRunner()
    exported = runner.invoke(
        main, ["schema", "export", "orders_config:config", "-o", "old.json", "--asyncapi", "a.json"]
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads(Path("a.json").read_text())["asyncapi"] == "3.0.0"
    same = runner.invoke(main, ["schema", "check", "old.json", "orders_config"])
    assert (same.exit_code, same.output) == (0, "no change since old.json\n")

    Path("orders2.py").write_text("import msgspec\n" + BREAKING[0][1])
    Path("orders2_config.py").write_text(
        Path("orders_config.py").read_text().replace("orders", "orders2")
    )
    broken = runner.invoke(main, ["schema", "check", "old.json", "orders2_config:config"])
    assert broken.exit_code == 1
    assert "BREAKING: order Placed.amount: removed field" in broken.output
    assert "1 breaking change since old.json" in broken.output
    missing = runner.invoke(main, ["schema", "check", "old.json", "orders_config:nothing"])
    assert missing.exit_code == 1
    assert "orders_config has no attribute nothing" in missing.output


def test_the_committed_cart_schemas_are_current() -> None:
    for name, document in [
        ("cart.json", export_schema([cart_config])),
        ("cart.asyncapi.json", asyncapi_document([cart_config])),
    ]:
        committed = json.loads((ROOT / "docs" / "schemas" / name).read_text())
        current = json.loads(json.dumps(document))
        assert committed == current, f"docs/schemas/{name} is out of date: run scripts/schemas"
