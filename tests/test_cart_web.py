"""The cart web app over HTTP (in process): pages, forms, htmx fragments and every bad input."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from eventsignal.cart.app import MAX_BODY, create_app
from eventsignal.cart.assets import HTMX_ENV
from eventsignal.cart.domain import MAX_PRICE
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.web.security import SECURITY_HEADERS

HX = {"HX-Request": "true"}


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cart") as client,
    ):
        yield client


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(store=store)) as client:
        yield client


async def new_cart(client: httpx.AsyncClient) -> str:
    response = await client.post("/carts")
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/carts/[A-Za-z0-9_-]{22}", location)
    return location


async def add(
    client: httpx.AsyncClient, cart: str, sku: str, quantity: object = 1, price: object = 100
) -> httpx.Response:
    """Add a product; an int ``price`` is cents, typed into the form as money (120: 1.20)."""
    typed = f"{price // 100}.{price % 100:02d}" if isinstance(price, int) else str(price)
    data = {"sku": sku, "quantity": str(quantity), "price": typed}
    return await client.post(f"{cart}/add", data=data)


async def versions(store: EventStore, cart: str) -> int:
    return len(await store.read_aggregate("cart", cart.rsplit("/", 1)[1]))


async def test_home_offers_a_new_or_an_existing_cart(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert '<form method="post" action="/carts">' in page.text
    assert '<form method="get" action="/carts/open" class="open">' in page.text


async def test_a_new_cart_is_empty(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    page = await client.get(cart)
    assert page.status_code == 200
    assert "The cart is empty" in page.text
    assert f'action="{cart}/add"' in page.text
    assert f'hx-post="{cart}/add"' in page.text


async def test_adding_redirects_back_to_the_cart(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    response = await add(client, cart, "apple", 3, 120)
    assert response.status_code == 303
    assert response.headers["location"] == cart
    page = await client.get(cart)
    assert "apple" in page.text
    assert '<td class="num" id="total">3.60</td>' in page.text


async def test_htmx_requests_get_the_cart_fragment(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    response = await client.post(
        f"{cart}/add", data={"sku": "pear", "quantity": "2", "price": "0.95"}, headers=HX
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="cart"')
    assert "<html" not in response.text
    assert '<td class="num" id="total">1.90</td>' in response.text


async def test_removing_a_product(client: httpx.AsyncClient, store: MemoryStore) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple")
    await add(client, cart, "pear")
    response = await client.post(f"{cart}/remove", data={"sku": "apple"})
    assert response.status_code == 303
    page = await client.get(cart)
    assert '<td class="sku">apple</td>' not in page.text
    assert '<td class="sku">pear</td>' in page.text
    missing = await client.post(f"{cart}/remove", data={"sku": "apple"})
    assert missing.status_code == 409
    assert "apple is not in the cart" in missing.text
    assert await versions(store, cart) == 3


async def test_a_duplicate_sku_is_refused_inline(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple")
    response = await add(client, cart, "apple", 2, 50)
    assert response.status_code == 409
    assert '<p class="error" role="alert">apple is already in the cart</p>' in response.text
    assert "<html" in response.text  # without htmx: the whole page, with the form kept
    assert 'value="0.50" required>' in response.text
    fragment = await client.post(
        f"{cart}/add", data={"sku": "apple", "quantity": "1", "price": "1"}, headers=HX
    )
    assert fragment.status_code == 409
    assert "apple is already in the cart" in fragment.text
    assert "<html" not in fragment.text
    assert await versions(store, cart) == 1


@pytest.mark.parametrize(
    ("quantity", "price", "reason"),
    [
        ("1", "12.505", "the price must be an amount like 12.50, not &#39;12.505&#39;"),
        ("1", "abc", "the price must be an amount like 12.50"),
        ("1", "12.", "the price must be an amount like 12.50"),
        ("1", ".50", "the price must be an amount like 12.50"),
        ("1", "", "the price is missing"),
        ("one", "100", "the quantity must be a whole number"),
        ("1.5", "100", "the quantity must be a whole number"),
        ("1e3", "100", "the quantity must be a whole number"),
        ("0", "100", "the quantity must be a whole number from 1 to"),
        ("-2", "100", "the quantity must be a whole number from 1 to"),
        ("1", "-1", "the price must be an amount like 12.50, not &#39;-1&#39;"),
        ("1", f"{MAX_PRICE // 100}.01", "the price must be at most 1,000,000.00"),
        ("1", "9" * 5000, "the price 99999999999999999999... is far too large"),
        ("9" * 40, "1", "is far too large"),
        ("\uff11\uff12", "100", "the quantity must be a whole number"),  # fullwidth 12
        ("1", "\u0661\u0662\u0660", "the price must be an amount"),  # Arabic-Indic 120
        ("1", "9" * 5000 + "\u0669", "the price must be an amount like 12.50"),
    ],
)
async def test_bad_numbers_are_refused(
    client: httpx.AsyncClient, store: MemoryStore, quantity: str, price: str, reason: str
) -> None:
    cart = await new_cart(client)
    response = await add(client, cart, "apple", quantity, price)
    assert response.status_code == 400
    assert reason in response.text
    assert await versions(store, cart) == 0
    assert (await client.get(cart)).status_code == 200  # still serving


@pytest.mark.parametrize(
    ("sku", "reason"),
    [
        ("", "the sku must not be empty"),
        ("   ", "the sku must not be empty"),
        ("x" * 10_000, "the sku is 10000 characters long; at most 100 are allowed"),
        ("a\tb", "the sku must not contain control characters"),
    ],
)
async def test_bad_skus_are_refused(
    client: httpx.AsyncClient, store: MemoryStore, sku: str, reason: str
) -> None:
    cart = await new_cart(client)
    response = await add(client, cart, sku)
    assert response.status_code == 400
    assert reason in response.text
    assert "x" * 200 not in response.text  # the oversized value is not echoed back
    assert await versions(store, cart) == 0


async def test_an_oversized_form_is_refused(client: httpx.AsyncClient, store: MemoryStore) -> None:
    cart = await new_cart(client)
    response = await add(client, cart, "x" * (MAX_BODY + 1))
    assert response.status_code == 413
    assert "larger than" in response.text
    assert await versions(store, cart) == 0


async def test_markup_in_a_sku_is_shown_as_text(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    sku = '<script>alert("x")</script>'
    assert (await add(client, cart, sku)).status_code == 303
    for path in (cart, f"{cart}/history", f"{cart}/versions/1"):
        page = await client.get(path)
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(" in page.text
    duplicate = await add(client, cart, sku)
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; is already in the cart" in duplicate.text
    )


async def test_paying_updates_the_revenue(client: httpx.AsyncClient) -> None:
    before = await client.get("/revenue")
    assert '<span id="revenue">0.00</span>' in before.text
    cart = await new_cart(client)
    await add(client, cart, "apple", 2, 1250)
    response = await client.post(f"{cart}/pay")
    assert response.status_code == 303
    page = await client.get(cart)
    assert "Paid: 25.00" in page.text
    assert f'action="{cart}/add"' not in page.text
    after = await client.get("/revenue")
    assert '<span id="revenue">25.00</span>' in after.text
    assert '<span id="paid-carts">1</span>' in after.text


async def test_a_double_clicked_pay_is_charged_once(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple", 1, 999)
    first, second = await asyncio.gather(client.post(f"{cart}/pay"), client.post(f"{cart}/pay"))
    assert sorted([first.status_code, second.status_code]) == [303, 409]
    refused = first if first.status_code == 409 else second
    assert "the cart is already paid" in refused.text
    assert await versions(store, cart) == 2
    revenue = await client.get("/revenue")
    assert '<span id="revenue">9.99</span>' in revenue.text


async def test_an_empty_cart_cannot_be_paid(client: httpx.AsyncClient, store: MemoryStore) -> None:
    cart = await new_cart(client)
    response = await client.post(f"{cart}/pay", headers=HX)
    assert response.status_code == 409
    assert "an empty cart cannot be paid" in response.text
    assert await versions(store, cart) == 0


async def test_a_cart_whose_total_is_zero_cannot_be_paid(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    cart = await new_cart(client)
    assert (await add(client, cart, "free-sample", 2, 0)).status_code == 303
    response = await client.post(f"{cart}/pay", headers=HX)
    assert response.status_code == 409
    assert "a cart whose total is 0.00 cannot be paid" in response.text
    assert await versions(store, cart) == 1
    assert (await add(client, cart, "apple", 1, 50)).status_code == 303
    assert (await client.post(f"{cart}/pay")).status_code == 303  # free products may stay
    assert "Paid: 0.50" in (await client.get(cart)).text


async def test_cart_ids_are_unguessable(client: httpx.AsyncClient) -> None:
    ids = {(await new_cart(client)).rsplit("/", 1)[1] for _ in range(20)}
    assert len(ids) == 20
    for cart_id in ids:
        assert len(base64.urlsafe_b64decode(cart_id + "==")) * 8 >= 96
        assert (await client.get(f"/carts/{cart_id}")).status_code == 200


async def test_unknown_carts_are_not_found(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/carts/nope"),
        await client.get("/carts/nope/history"),
        await client.get("/carts/nope/versions/0"),
        await add(client, "/carts/nope", "apple"),
        await client.post("/carts/nope/pay"),
        await client.get("/carts/" + "z" * 300),
    ):
        assert response.status_code == 404
        assert "there is no cart with id" in response.text


async def test_opening_an_existing_cart_by_id(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    cart_id = cart.rsplit("/", 1)[1]
    found = await client.get("/carts/open", params={"cart_id": f"  {cart_id} "})
    assert found.status_code == 303
    assert found.headers["location"] == cart
    missing = await client.get("/carts/open", params={"cart_id": "<b>who</b>"})
    assert missing.status_code == 404
    assert "there is no cart with id &#39;&lt;b&gt;who&lt;/b&gt;&#39;" in missing.text
    empty = await client.get("/carts/open", params={"cart_id": ""})
    assert empty.status_code == 400
    assert "enter the id of a cart" in empty.text


async def test_unknown_routes_and_wrong_methods(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    unknown = await client.get("/no/such/page")
    assert unknown.status_code == 404
    assert '<p class="error" role="alert">Not Found</p>' in unknown.text
    wrong = await client.get(f"{cart}/pay")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert "Method Not Allowed" in wrong.text
    assert (await client.delete(cart)).status_code == 405
    assert (await client.get(cart)).status_code == 200


async def test_history_lists_every_event_with_its_data(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple", 2, 120)
    await add(client, cart, "pear", 1, 95)
    await client.post(f"{cart}/remove", data={"sku": "apple"})
    await client.post(f"{cart}/pay")
    page = await client.get(f"{cart}/history")
    assert page.status_code == 200
    said = re.findall(r'<span class="what">([^<]*)</span>', page.text)
    assert said == [
        "The cart was opened.",
        "Added 2 \u00d7 apple at 1.20 EUR.",
        "Added 1 \u00d7 pear at 0.95 EUR.",
        "Removed apple.",
        "Paid 0.95 EUR.",
    ]
    # The raw event, one click away.
    raw = re.findall(r"<summary>raw event</summary><code>(\w+) ", page.text)
    assert raw == ["ProductAdded", "ProductAdded", "ProductRemoved", "CartPaid"]
    assert "<code>CartPaid {&#34;total&#34;:95}</code>" in page.text
    for version in range(5):
        assert f'href="{cart}/versions/{version}"' in page.text


async def test_a_cart_as_it_was_at_a_version(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple", 2, 120)
    await add(client, cart, "pear", 1, 95)
    await client.post(f"{cart}/remove", data={"sku": "apple"})
    await client.post(f"{cart}/pay")
    at_two = await client.get(f"{cart}/versions/2")
    assert at_two.status_code == 200
    assert "at version 2 of 4" in at_two.text
    assert '<td class="sku">apple</td>' in at_two.text
    assert '<td class="num" id="total">3.35</td>' in at_two.text
    assert "Paid" not in at_two.text
    assert "<form" not in at_two.text.split("<main")[1]  # read-only
    at_zero = await client.get(f"{cart}/versions/0")
    assert "The cart is empty" in at_zero.text
    beyond = await client.get(f"{cart}/versions/5")
    assert beyond.status_code == 404
    assert "has versions 0 to 4, not 5" in beyond.text
    assert (await client.get(f"{cart}/versions/-1")).status_code == 404
    assert (await client.get(f"{cart}/versions/one")).status_code == 404


@pytest.mark.parametrize(
    "version", ["9" * 5000, "1" + "0" * 30, str(2**63), "\uff11", "\u0661", "1.0", "1e3"]
)
async def test_absurd_versions_are_not_found(client: httpx.AsyncClient, version: str) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple")
    response = await client.get(f"{cart}/versions/{version}")
    assert response.status_code == 404
    assert "has versions 0 to 1, not" in response.text
    assert len(response.text) < 5000  # the absurd number is not echoed back whole


async def test_an_unreachable_store_is_503_with_a_retry_hint(tmp_path: Path) -> None:
    path = tmp_path / "cart.db"
    store = SQLiteStore(path, migrate=True, busy_timeout=0.2)
    async with serving(create_app(store=store)) as client:
        cart = await new_cart(client)
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Another process holding the write lock; taken off the event loop, so that the app's
        # revenue subscription can finish a transaction it may have in flight.
        await asyncio.to_thread(blocker.execute, "BEGIN IMMEDIATE")
        try:
            for response in (await client.post("/carts"), await add(client, cart, "apple")):
                assert response.status_code == 503
                assert response.headers["retry-after"].isascii()
                assert int(response.headers["retry-after"]) > 0
                assert "try again" in response.text
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await add(client, cart, "apple")).status_code == 303


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "http://cart.evil.example"},
    {"Origin": "http://cart:8080"},
    {"Origin": "null"},
    {"Referer": "https://evil.example/page"},
    {"Origin": "https://evil.example", "Referer": "http://cart/carts"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_forms_posted_from_another_site_are_refused(
    client: httpx.AsyncClient, store: MemoryStore, headers: dict[str, str]
) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple")
    data = {"sku": "pear", "quantity": "1", "price": "1"}
    for path, form in ((f"{cart}/add", data), (f"{cart}/remove", {"sku": "apple"})):
        response = await client.post(path, data=form, headers=headers)
        assert response.status_code == 403
    assert (await client.post(f"{cart}/pay", headers=headers)).status_code == 403
    assert (await client.post("/carts", headers=headers)).status_code == 403
    assert await versions(store, cart) == 1
    assert len(await store.aggregates("cart")) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://cart"},
        {"Origin": "http://CART:80", **HX},
        {"Referer": "http://cart/carts/x"},
        {},  # not a browser: curl, a script
    ],
)
async def test_forms_from_the_same_site_are_accepted(
    client: httpx.AsyncClient, store: MemoryStore, headers: dict[str, str]
) -> None:
    cart = await new_cart(client)
    response = await client.post(
        f"{cart}/add", data={"sku": "apple", "quantity": "1", "price": "1"}, headers=headers
    )
    assert response.status_code in (200, 303)
    assert await versions(store, cart) == 1


async def test_trusted_origins_are_accepted(store: MemoryStore) -> None:
    async with serving(create_app(store=store, trusted_origins=["https://shop.example"])) as client:
        accepted = await client.post("/carts", headers={"Origin": "https://shop.example"})
        assert accepted.status_code == 303
        refused = await client.post("/carts", headers={"Origin": "http://shop.example"})
        assert refused.status_code == 403


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    responses = [
        await client.get("/"),
        await client.get(cart),
        await client.post(f"{cart}/pay", headers=HX),  # refused: 409
        await client.get("/static/cart.css"),
        await client.get("/no/such/page"),
        await client.post("/carts", headers={"Origin": "https://evil.example"}),
    ]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


async def test_pages_have_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple")
    for path in ("/", cart, f"{cart}/history", f"{cart}/versions/1", "/revenue", "/nope"):
        text = (await client.get(path)).text
        assert "<style" not in text
        assert " style=" not in text
        for script in re.findall(r"<script[^>]*>", text):
            assert 'src="/htmx.min.js"' in script
        assert not re.search(r"<[^>]+\son[a-z]+=", text)  # no onclick= and the like


async def test_revenue_is_kept_across_restarts_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "cart.db"
    async with serving(create_app(f"sqlite:///{path}")) as first:
        cart = await new_cart(first)
        await add(first, cart, "apple", 1, 300)
        await first.post(f"{cart}/pay")
        # A second process on the same file, running at the same time.
        async with serving(create_app(str(path))) as second:
            other = await new_cart(second)
            await add(second, other, "pear", 1, 45)
            await second.post(f"{other}/pay")
            revenue = await second.get("/revenue")
            assert '<span id="revenue">3.45</span>' in revenue.text
        revenue = await first.get("/revenue")
        assert '<span id="revenue">3.45</span>' in revenue.text
    async with serving(create_app(f"sqlite:///{path}")) as restarted:
        revenue = await restarted.get("/revenue")
        assert '<span id="revenue">3.45</span>' in revenue.text
        assert "Paid: 3.00" in (await restarted.get(cart)).text


@pytest.fixture
def htmx_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "htmx.min.js"
    script.write_text("/* htmx stand-in */")
    monkeypatch.setenv(HTMX_ENV, str(script))
    return script


async def test_htmx_is_served_from_the_installed_package(htmx_file: Path) -> None:
    async with serving(create_app(store=MemoryStore())) as client:
        page = await client.get("/")
        assert '<script src="/htmx.min.js" defer></script>' in page.text
        script = await client.get("/htmx.min.js")
        assert script.status_code == 200
        assert script.text == "/* htmx stand-in */"
        assert script.headers["content-type"].startswith("text/javascript")


async def test_pages_work_without_htmx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MemoryStore
) -> None:
    monkeypatch.delenv(HTMX_ENV, raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    async with serving(create_app(store=store)) as client:
        cart = await new_cart(client)
        page = await client.get(cart)
        assert "htmx.min.js" not in page.text
        assert (await client.get("/htmx.min.js")).status_code == 404
        assert (await add(client, cart, "apple")).status_code == 303
        assert await versions(store, cart) == 1


async def test_the_stylesheet_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/cart.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


async def test_the_app_runs_on_postgresql(postgres_dsn: str) -> None:
    async with serving(create_app(postgres_dsn)) as client:
        cart = await new_cart(client)
        assert (await add(client, cart, "apple", 2, 500)).status_code == 303
        assert (await add(client, cart, "apple", 1, 1)).status_code == 409
        assert (await client.post(f"{cart}/pay")).status_code == 303
        revenue = await client.get("/revenue")
        assert '<span id="revenue">10.00</span>' in revenue.text
    async with serving(create_app(postgres_dsn)) as restarted:
        assert "Paid: 10.00" in (await restarted.get(cart)).text
        history = await restarted.get(f"{cart}/history")
        assert history.text.count("<code>ProductAdded ") == 1


@pytest.mark.nats
async def test_the_cart_runs_on_nats_alone(nats_url: str) -> None:
    """Events, revenue checkpoint and read model all in JetStream (a 2.12+ server)."""
    import nats as nats_client

    stream = f"cart_{uuid.uuid4().hex}"
    try:
        async with serving(create_app(f"{nats_url}?stream={stream}")) as client:
            cart = await new_cart(client)
            await add(client, cart, "tea", 2, 1250)
            assert (await client.post(f"{cart}/pay")).status_code == 303
            revenue = await client.get("/revenue")
            assert '<span id="revenue">25.00</span>' in revenue.text
    finally:
        connection = await nats_client.connect(nats_url)
        try:
            for bucket in ("state", "snapshots"):
                with contextlib.suppress(Exception):
                    await connection.jetstream().delete_key_value(f"{stream}_{bucket}")
            await connection.jetstream().delete_stream(stream)
        finally:
            await connection.close()


NAVIGATION = {"Sec-Fetch-Mode": "navigate"}  # what a browser sends with a form it submits


@pytest.mark.parametrize(
    ("typed", "cents"), [("12.50", 1250), ("12,5", 1250), ("3", 300), ("0.05", 5), ("0", 0)]
)
async def test_prices_are_typed_as_money_and_stored_in_cents(
    client: httpx.AsyncClient, store: MemoryStore, typed: str, cents: int
) -> None:
    cart = await new_cart(client)
    response = await add(client, cart, "apple", 2, typed)
    assert response.status_code == 303
    [event] = await store.read_aggregate("cart", cart.rsplit("/", 1)[1])
    assert msgspec.json.decode(event.data)["product"]["price"] == cents


async def test_the_currency_is_a_setting(store: MemoryStore) -> None:
    async with serving(create_app(store=store, currency="CHF")) as client:
        cart = await new_cart(client)
        await add(client, cart, "apple", 2, 120)
        page = await client.get(cart)
    assert "Unit price (CHF)" in page.text
    assert "Pay 2.40 CHF" in page.text


async def test_pay_is_disabled_until_there_is_something_to_pay(
    client: httpx.AsyncClient,
) -> None:
    cart = await new_cart(client)
    empty = await client.get(cart)
    assert '<button type="submit" id="pay" disabled>Pay 0.00 EUR</button>' in empty.text
    await add(client, cart, "free sample", 1, 0)
    free = await client.get(cart)
    assert 'id="pay" disabled>' in free.text
    await add(client, cart, "apple", 1, 120)
    ready = await client.get(cart)
    assert '<button type="submit" id="pay">Pay 1.20 EUR</button>' in ready.text


async def test_a_refused_form_without_javascript_comes_back_to_the_cart_with_its_reason(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    cart = await new_cart(client)
    await add(client, cart, "apple")
    for data, reason in [
        ({"sku": "apple", "quantity": "2", "price": "0.50"}, "apple is already in the cart"),
        ({"sku": "pear", "quantity": "2", "price": "cheap"}, "the price must be an amount"),
    ]:
        refused = await client.post(f"{cart}/add", data=data, headers=NAVIGATION)
        assert refused.status_code == 303
        assert refused.headers["location"] == cart  # Refresh and Back never resend the form
        page = await client.get(cart)
        assert page.status_code == 200
        assert '<p class="error" role="alert">' in page.text
        assert reason in page.text
        assert f'value="{data["price"]}" required>' in page.text  # the form as it was sent
        again = await client.get(cart)
        assert '<p class="error"' not in again.text  # shown once
    paid_twice = await client.post(f"{cart}/pay", headers=NAVIGATION)
    assert paid_twice.status_code == 303
    await client.post(f"{cart}/pay", headers=NAVIGATION)
    assert "the cart is already paid" in (await client.get(cart)).text
    assert await versions(store, cart) == 2


async def test_the_home_page_lists_the_carts_changed_last(client: httpx.AsyncClient) -> None:
    first = await new_cart(client)
    second = await new_cart(client)
    await add(client, first, "apple", 2, 120)
    await add(client, second, "pear", 1, 95)
    await add(client, first, "fig", 1, 250)
    await client.post(f"{first}/pay")
    items: list[str] = []
    for _ in range(100):  # the projection follows the store within moments
        home = await client.get("/")
        items = re.findall(r'<li><a href="/carts/([\w-]+)">.*?</li>', home.text, re.S)
        if items and "paid" in home.text:
            break
        await asyncio.sleep(0.05)
    assert items == [first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]]
    assert '2 products, 4.90 EUR, <span class="paid">paid</span>' in home.text
    assert "1 product, 0.95 EUR" in home.text


async def test_the_favicon_is_served(client: httpx.AsyncClient) -> None:
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert '<link rel="icon" href="/static/favicon.svg"' in (await client.get("/")).text
