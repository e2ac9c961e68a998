"""The Flask example driven through its WSGI test client from eight threads at once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from eventsignal import CommandRejected, Signal
from eventsignal.cart.domain import (
    AddToCart,
    CompletePurchase,
    Product,
    RemoveFromCart,
    cart_config,
)
from eventsignal.stores import SQLiteStore
from eventsignal.sync import Signal as SyncSignal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from flask_cart import cart_json, create_app

THREADS = 8
ROUNDS = 12


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Flask, Path]]:
    path = tmp_path / "cart.db"
    with SyncSignal(cart_config, store=SQLiteStore(path, migrate=True), telemetry=None) as signal:
        app = create_app(signal)
        app.testing = True
        yield app, path


def _script(n: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Thread ``n``'s requests on a cart of its own: adds, a removal, a duplicate, payment."""
    cart = f"/carts/own-{n}"
    steps: list[tuple[str, str, dict[str, Any] | None]] = [("POST", cart, None)]
    for i in range(ROUNDS):
        steps.append(("POST", f"{cart}/products", {"sku": f"s{i}", "quantity": 1, "price": i}))
    steps += [
        ("DELETE", f"{cart}/products/s0", None),
        ("POST", f"{cart}/products", {"sku": "s1", "quantity": 1, "price": 1}),
        ("DELETE", f"{cart}/products/nothing", None),
        ("POST", f"{cart}/purchase", None),
        ("POST", f"{cart}/purchase", None),
        ("GET", cart, None),
    ]
    return steps


def test_eight_threads_lose_no_update_and_answer_as_the_async_api(
    served: tuple[Flask, Path],
) -> None:
    app, path = served
    setup = app.test_client()
    assert setup.post("/carts/shared").status_code == 201
    assert setup.post("/carts/shared").status_code == 409

    def work(n: int) -> list[tuple[int, Any]]:
        client = app.test_client()
        answers = []
        for i in range(ROUNDS):  # everyone adds to the shared cart, each a sku of its own
            sku = {"sku": f"t{n}-{i}", "quantity": n + 1, "price": 10}
            assert client.post("/carts/shared/products", json=sku).status_code == 200
        # All want the same sku in the shared cart: exactly one gets it.
        contested = {"sku": "contested", "quantity": 1, "price": n}
        reply = client.post("/carts/shared/products", json=contested)
        answers.append((reply.status_code, reply.get_json()))
        for method, url, body in _script(n):
            reply = client.open(url, method=method, json=body)
            answers.append((reply.status_code, reply.get_json()))
        return answers

    with ThreadPoolExecutor(THREADS) as pool:
        replies = list(pool.map(work, range(THREADS)))

    contested = [answers[0] for answers in replies]
    assert sorted(status for status, _ in contested) == [200] + [409] * (THREADS - 1)
    assert {body["error"] for status, body in contested if status == 409} == {
        "contested is already in the cart"
    }
    shared = setup.get("/carts/shared").get_json()
    assert shared["version"] == THREADS * ROUNDS + 1
    assert len(shared["products"]) == THREADS * ROUNDS + 1
    assert shared["total"] == sum(10 * (n + 1) * ROUNDS for n in range(THREADS)) + next(
        p["price"] for p in shared["products"] if p["sku"] == "contested"
    )
    for n in range(THREADS):
        added = [p["sku"] for p in shared["products"] if p["sku"].startswith(f"t{n}-")]
        assert added == [f"t{n}-{i}" for i in range(ROUNDS)]  # each thread's own order kept

    expected, rebuilt = asyncio.run(_async_answers(path))
    assert rebuilt == shared
    for n, answers in enumerate(replies):
        assert answers[1:] == expected[n], f"thread {n}"


async def _async_answers(path: Path) -> tuple[list[list[tuple[int, Any]]], dict[str, Any]]:
    """What the async API answers to each thread's script, on a fresh store; and the shared
    cart rebuilt from the file the app wrote, as the app showed it."""
    commands: dict[str, Any] = {}
    out = []
    async with Signal(cart_config, telemetry=None) as signal:
        for n in range(THREADS):
            answers: list[tuple[int, Any]] = []
            for method, url, body in _script(n):
                cart_id = url.split("/")[2]
                try:
                    if method == "POST" and url.endswith("/purchase"):
                        commands[cart_id] = CompletePurchase()
                    elif method == "POST" and url.endswith("/products"):
                        assert body is not None
                        commands[cart_id] = AddToCart(Product(**body))
                    elif method == "DELETE":
                        commands[cart_id] = RemoveFromCart(url.rsplit("/", 1)[1])
                    elif method == "POST":
                        handle = await signal.create(cart_id)
                        answers.append((201, cart_json(handle.state, handle.version)))
                        continue
                    else:
                        handle = await signal.aggregate(cart_id)
                        answers.append((200, cart_json(handle.state, handle.version)))
                        continue
                    state = await signal.handle_command(cart_id, commands[cart_id])
                    version = (await signal.aggregate(cart_id)).version
                    answers.append((200, cart_json(state, version)))
                except CommandRejected as rejected:
                    answers.append((409, {"error": rejected.reason}))
            out.append(answers)
    async with Signal(cart_config, store=SQLiteStore(path), telemetry=None) as again:
        rebuilt = await again.aggregate("shared")
        return out, cart_json(rebuilt.state, rebuilt.version)


def test_errors_become_statuses(served: tuple[Flask, Path]) -> None:
    client = served[0].test_client()
    assert client.get("/carts/nobody").status_code == 404
    client.post("/carts/c")
    bad = client.post("/carts/c/products", json={"sku": "x", "quantity": "two", "price": 1})
    assert bad.status_code == 422
    assert "quantity" in bad.get_json()["error"]
    client.post("/carts/c/products", json={"sku": "x", "quantity": 2, "price": 150})
    history = client.get("/carts/c/history").get_json()
    product = {"sku": "x", "quantity": 2, "price": 150}
    assert history == [{"version": 1, "event": "ProductAdded", "data": {"product": product}}]
