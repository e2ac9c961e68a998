"""The shopping cart as a JSON API in Flask, through the blocking facade :mod:`eventsignal.sync`.

Flask views are synchronous and a WSGI server runs them on a pool of threads; the facade lets
every thread call the same :class:`~eventsignal.sync.Signal`, whose commands still run one at a
time per cart. Run it with ``.venv/bin/python examples/flask_cart.py`` (a SQLite file
``flask-cart.db`` in the current directory), then for instance::

    curl -X POST localhost:5000/carts/c1
    curl -X POST localhost:5000/carts/c1/products -H 'content-type: application/json' \\
         -d '{"sku": "apple", "quantity": 2, "price": 120}'
    curl -X POST localhost:5000/carts/c1/purchase
    curl localhost:5000/carts/c1
"""

from __future__ import annotations

from typing import Any

import msgspec
from flask import Flask, Response, jsonify, request

from eventsignal import AggregateExists, AggregateNotFound, CommandRejected
from eventsignal.cart.domain import (
    AddToCart,
    Cart,
    CartCommand,
    CompletePurchase,
    Product,
    RemoveFromCart,
    cart_config,
)
from eventsignal.stores import EventStore, SQLiteStore
from eventsignal.sync import Signal


def cart_json(cart: Cart, version: int) -> dict[str, Any]:
    return {
        "version": version,
        "products": [msgspec.to_builtins(p) for p in cart.products],
        "total": cart.total,
        "paid": cart.paid,
    }


def create_app(signal: Signal[Cart, CartCommand]) -> Flask:
    """The app's routes over a started ``signal``; the caller owns its life cycle."""
    app = Flask(__name__)

    def run(cart_id: str, command: CartCommand) -> dict[str, Any]:
        handle = signal.aggregate(cart_id)
        return cart_json(handle.handle_command(command), handle.version)

    @app.post("/carts/<cart_id>")
    def create(cart_id: str) -> tuple[Response, int]:
        handle = signal.create(cart_id)
        return jsonify(cart_json(handle.state, handle.version)), 201

    @app.get("/carts/<cart_id>")
    def show(cart_id: str) -> Response:
        handle = signal.aggregate(cart_id)
        return jsonify(cart_json(handle.state, handle.version))

    @app.post("/carts/<cart_id>/products")
    def add(cart_id: str) -> Response:
        product = msgspec.convert(request.get_json(force=True), Product)
        return jsonify(run(cart_id, AddToCart(product)))

    @app.delete("/carts/<cart_id>/products/<sku>")
    def remove(cart_id: str, sku: str) -> Response:
        return jsonify(run(cart_id, RemoveFromCart(sku)))

    @app.post("/carts/<cart_id>/purchase")
    def purchase(cart_id: str) -> Response:
        return jsonify(run(cart_id, CompletePurchase()))

    @app.get("/carts/<cart_id>/history")
    def history(cart_id: str) -> Response:
        return jsonify(
            [
                {"version": e.version, "event": e.name, "data": msgspec.to_builtins(e.data)}
                for e in signal.events(cart_id)
            ]
        )

    @app.errorhandler(CommandRejected)
    def rejected(error: CommandRejected) -> tuple[Response, int]:
        return jsonify({"error": error.reason}), 409

    @app.errorhandler(AggregateExists)
    def exists(error: AggregateExists) -> tuple[Response, int]:
        return jsonify({"error": f"cart {error.aggregate_id!r} exists already"}), 409

    @app.errorhandler(AggregateNotFound)
    def missing(error: AggregateNotFound) -> tuple[Response, int]:
        return jsonify({"error": f"no cart {error.aggregate_id!r}"}), 404

    @app.errorhandler(msgspec.ValidationError)
    def invalid(error: msgspec.ValidationError) -> tuple[Response, int]:
        return jsonify({"error": str(error)}), 422

    return app


def main(store: EventStore | None = None) -> None:
    with Signal(cart_config, store=store or SQLiteStore("flask-cart.db", migrate=True)) as signal:
        create_app(signal).run(threaded=True)


if __name__ == "__main__":
    main()
