"""The cart app publishes each payment as a CloudEvent when given a sink URL, and nothing
otherwise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from publishing_brokers import RedisBroker
from starlette.applications import Starlette

from eventsignal.cart.app import create_app
from eventsignal.cart.publishing import publish_url
from eventsignal.stores import MemoryStore
from eventsignal.subscriptions import subscription_status


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cart") as client,
    ):
        yield client


async def pay_a_cart(client: httpx.AsyncClient) -> str:
    cart = (await client.post("/carts")).headers["location"]
    data = {"sku": "apple", "quantity": "2", "price": "12.50"}
    await client.post(f"{cart}/add", data=data)
    assert (await client.post(f"{cart}/pay")).status_code == 303
    return cart.rsplit("/", 1)[1]


async def test_payments_are_published_when_a_sink_is_set() -> None:
    broker = RedisBroker()
    store = MemoryStore()
    try:
        async with serving(create_app(store=store, publish_to=broker.url())) as client:
            cart_id = await pay_a_cart(client)
            deadline = time.monotonic() + 10
            while await broker.count() < 1 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        [paid] = await broker.received()
        assert paid.get_type() == "cart.CartPaid"
        assert paid.get_source() == "/cart"
        assert paid.get_subject() == cart_id
        assert paid.get_data() == {"total": 2500}
        names = {s.name for s in await subscription_status(store)}
        assert names == {"cart-revenue", "cart-recent", "cart-paid-events"}
    finally:
        await broker.cleanup()


async def test_nothing_is_published_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CART_PUBLISH_TO", raising=False)
    assert publish_url(None) is None
    monkeypatch.setenv("CART_PUBLISH_TO", "redis://127.0.0.1:6379")
    assert publish_url(None) == "redis://127.0.0.1:6379"
    store = MemoryStore()
    async with serving(create_app(store=store)) as client:
        await pay_a_cart(client)
    assert {s.name for s in await subscription_status(store)} == {"cart-revenue", "cart-recent"}
