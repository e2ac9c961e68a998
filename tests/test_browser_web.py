"""The stream browser over HTTP (in process), on SQLite, PostgreSQL and the memory store: every
page, the live log, and the admin actions with their refusals and their audit records."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import browser_app
import httpx
import msgspec
import pytest
from browser_app import fill
from starlette.applications import Starlette

from eventsignal.browser import create_app
from eventsignal.browser.admin import AUDIT_TYPE, COOKIE
from eventsignal.browser.catalog import PAGE
from eventsignal.cart import cart_config
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.stores.sql import SQLStore
from eventsignal.subscriptions import parked_events

SECRET = "open sesame"
SAME_SITE = {"Origin": "http://browser"}
MakeStore = Callable[[], Awaitable[EventStore]]


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A factory of unopened stores on one database (the memory store is a single object)."""
    if request.param == "nats":
        from eventsignal.stores.nats import NatsStore

        url: str = request.getfixturevalue("nats_url")
        stream = f"browser_{uuid.uuid4().hex}"

        async def nats() -> EventStore:
            return NatsStore(url, stream=stream)

        return nats
    if request.param == "memory":
        memory = MemoryStore()

        async def same() -> EventStore:
            return memory

        return same
    if request.param == "sqlite":
        from eventsignal.stores import SQLiteStore

        async def sqlite() -> EventStore:
            return SQLiteStore(tmp_path / "events.db", migrate=True)

        return sqlite
    factory = request.getfixturevalue("postgres_store_factory")

    async def postgres() -> EventStore:
        store: EventStore = await factory()
        return store

    return postgres


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://browser") as client,
    ):
        yield client


@pytest.fixture
async def filled(make_store: MakeStore) -> tuple[EventStore, dict[str, Any]]:
    store = await make_store()
    await store.open()
    try:
        facts = await fill(store)
    finally:
        await store.close()
    return store, facts


def browser(store: EventStore, **options: Any) -> Starlette:
    return create_app(store, configs=[cart_config], live_seconds=0.3, **options)


async def test_home_lists_the_aggregate_types_with_their_counts(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        page = await client.get("/")
    assert page.status_code == 200
    rows = re.findall(r'type=(\w+)">\w+</a></td><td class="num">(\d+)', page.text)
    assert rows == [("cart", "5")]
    assert "read-only" in page.text


async def test_an_aggregate_is_found_by_prefix_or_by_id(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        found = await client.get("/aggregates", params={"q": "c-"})
        assert re.findall(r"<code>(c-\d)</code>", found.text) == ["c-1", "c-2", "c-3", "c-4"]
        exact = await client.get("/aggregates", params={"q": "cursed-1", "type": "cart"})
        assert exact.status_code == 303
        assert exact.headers["location"] == "/streams/cart/cursed-1"
        none = await client.get("/aggregates", params={"q": "zzz"})
        assert "No aggregate matches" in none.text


async def test_aggregate_listings_page_by_key(make_store: MakeStore) -> None:
    store = await make_store()
    await store.open()
    try:
        for n in range(PAGE + 3):
            await store.create("item", f"i-{n:03d}")
    finally:
        await store.close()
    async with serving(browser(store)) as client:
        first = await client.get("/aggregates", params={"type": "item"})
        ids = re.findall(r"<code>(i-\d+)</code>", first.text)
        assert ids == [f"i-{n:03d}" for n in range(PAGE)]
        [next_url] = re.findall(r'href="(/aggregates\?[^"]+)">Next page', first.text)
        second = await client.get(next_url.replace("&amp;", "&"))
        assert re.findall(r"<code>(i-\d+)</code>", second.text) == ["i-050", "i-051", "i-052"]
        assert "Next page" not in second.text


async def test_a_stream_shows_its_events_a_page_at_a_time(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        first = await client.get("/streams/cart/c-1")
        assert first.status_code == 200
        versions = [int(v) for v in re.findall(r'<span class="version">v(\d+)</span>', first.text)]
        assert versions == list(range(1, PAGE + 1))
        assert "ProductAdded" in first.text
        assert "&#34;sku&#34;: &#34;sku-0&#34;" in first.text  # indented JSON, escaped
        assert f'href="/streams/cart/c-1?after={PAGE}"' in first.text
        rest = await client.get(f"/streams/cart/c-1?after={PAGE}")
        versions = [int(v) for v in re.findall(r'<span class="version">v(\d+)</span>', rest.text)]
        assert versions == list(range(PAGE + 1, browser_app.LONG_CART + 2))
        # Causation and correlation are links; a credential-like key is masked.
        assert 'href="/events/id/00000000-0000-4000-8000-000000000001"' in rest.text
        assert 'href="/log?correlation=flow-7"' in rest.text
        assert "hunter2" not in rest.text
        assert "api_token" in rest.text
        missing = await client.get("/streams/cart/nobody")
        assert missing.status_code == 404
        assert "there is no cart &#39;nobody&#39;" in missing.text


async def test_states_at_any_version_and_the_change_between_two(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        state = await client.get("/streams/cart/cursed-1/state", params={"version": 1})
        assert "at version 1 of 2" in state.text
        assert 'type="range" id="version" name="version" min="0" max="2" value="1"' in state.text
        assert "apple" in state.text
        assert "&#34;paid&#34;: false" in state.text
        diff = await client.get("/streams/cart/cursed-1/diff", params={"from": 1, "to": 2})
        assert re.search(r'<span class="removed">- +&#34;paid&#34;: false', diff.text)
        assert re.search(r'<span class="added">\+ +&#34;paid&#34;: true', diff.text)
    async with serving(create_app(store)) as client:  # no configs: no states
        refused = await client.get("/streams/cart/cursed-1/state")
        assert refused.status_code == 404
        assert "--app MODULE:ATTR" in refused.text


async def test_single_events_by_position_and_by_id(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        event = (await store.read_all(0, 3))[2]
        page = await client.get(f"/events/{event.position}")
        assert f"Event at position {event.position}" in page.text
        assert str(event.id) in page.text
        assert (await client.get(f"/events/{event.position + 1_000_000_000}")).status_code == 404
        by_id = await client.get(f"/events/id/{event.id}")
    if isinstance(store, SQLStore):
        assert by_id.status_code == 303
        assert by_id.headers["location"] == f"/events/{event.position}"
    else:
        assert by_id.status_code == 404  # no lookup by id without SQL


async def test_the_log_pages_and_filters(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        head = await store.head_position()
        newest = await client.get("/log")
        positions = [int(p) for p in re.findall(r'<a href="/events/(\d+)">', newest.text)]
        everything = [e.position for e in await store.read_all(0, 1000)]
        # The newest page: the events after head - PAGE (positions without gaps fill it).
        assert positions == [p for p in everything if p > head - PAGE]
        assert positions[-1] == head
        first = await client.get("/log", params={"after": 0})
        positions = [int(p) for p in re.findall(r'<a href="/events/(\d+)">', first.text)]
        assert positions == everything[:PAGE]
        paid = await client.get("/log", params={"event_name": "CartPaid"})
        assert len(re.findall(r"<td>CartPaid</td>", paid.text)) == 1
        one = await client.get("/log", params={"aggregate": "cart/cursed-1"})
        assert len(re.findall(r"cursed-1</code> v\d", one.text)) == 2
        correlated = await client.get("/log", params={"correlation": "flow-7"})
        assert len(re.findall(r"<td>ProductRemoved</td>", correlated.text)) == 1


async def test_the_live_log_streams_new_events_as_server_sent_events(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        *_, before, one, two = [e.position for e in await store.read_all(0, 1000)]
        live = await client.get("/log/live", params={"after": before, "aggregate": "cart"})
        assert live.headers["content-type"].startswith("text/event-stream")
        ids = re.findall(r"^id: (\d+)$", live.text, re.MULTILINE)
        assert ids[:2] == [str(one), str(two)]
        assert live.text.count("event: row") == 2
        resumed = await client.get(
            "/log/live", params={"after": 0}, headers={"Last-Event-ID": str(one)}
        )
        assert resumed.text.count("event: row") == 1


async def test_subscriptions_show_lag_partitions_and_parked_events(filled: Any) -> None:
    store, facts = filled
    async with serving(browser(store)) as client:
        overview = await client.get("/subscriptions")
        assert '<a href="/subscriptions/browser-fragile">browser-fragile</a>' in overview.text
        detail = await client.get("/subscriptions/browser-fragile")
        assert "ValueError: cursed-1 is cursed" in detail.text
        assert detail.text.count("<td>nobody</td>") == 1  # one partition, released
        assert str(facts["parked"][0].position) in detail.text
        assert "/retry" not in detail.text  # read-only: no actions offered
        assert (await client.get("/subscriptions/nothing")).status_code == 404


async def test_read_models_list_their_documents(filled: Any) -> None:
    store, _ = filled
    async with serving(browser(store)) as client:
        models = await client.get("/models")
        assert '<a href="/models/browser-seen">browser-seen</a>' in models.text
        assert '<a href="/subscriptions/browser-fragile">browser-fragile</a>' in models.text
        documents = await client.get("/models/browser-seen")
        keys = re.findall(r"<summary><code>([\w-]+)</code>", documents.text)
        assert keys == ["c-1"]  # the other carts have no events; cursed-1's are parked
        assert f"&#34;events&#34;: {browser_app.LONG_CART + 1}" in documents.text
        assert (await client.get("/models/nothing")).status_code == 404


async def test_actions_need_the_admin_secret(filled: Any) -> None:
    store, facts = filled
    event_id = facts["parked"][0].event_id
    action = f"/subscriptions/browser-fragile/parked/{event_id}/skip"
    async with serving(browser(store)) as client:  # started without a secret
        assert (await client.post(action, headers=SAME_SITE)).status_code == 403
        login = await client.post("/admin/login", data={"secret": ""}, headers=SAME_SITE)
        assert login.status_code == 403
    async with serving(browser(store, admin_secret=SECRET)) as client:
        assert (await client.post(action, headers=SAME_SITE)).status_code == 403  # no cookie
        wrong = await client.post("/admin/login", data={"secret": "guess"}, headers=SAME_SITE)
        assert wrong.status_code == 403
        assert COOKIE not in client.cookies
        assert len(await parked_events(store, "browser-fragile")) == 2
        assert not await store.aggregates(AUDIT_TYPE)


async def test_an_admin_retries_and_skips_parked_events_and_both_are_audited(
    filled: Any,
) -> None:
    store, facts = filled
    first, second = facts["parked"]
    base = "/subscriptions/browser-fragile/parked"
    async with serving(browser(store, admin_secret=SECRET)) as client:
        login = await client.post("/admin/login", data={"secret": SECRET}, headers=SAME_SITE)
        assert login.status_code == 303
        assert SECRET not in login.headers["set-cookie"]
        detail = await client.get("/subscriptions/browser-fragile")
        assert f"{base}/{first.event_id}/retry" in detail.text

        failed = await client.post(f"{base}/{first.event_id}/retry", headers=SAME_SITE)
        assert failed.status_code == 303
        assert "failed again" in (await client.get(failed.headers["location"])).text
        browser_app.healed["on"] = True
        retried = await client.post(f"{base}/{first.event_id}/retry", headers=SAME_SITE)
        assert "delivered" in (await client.get(retried.headers["location"])).text
        skipped = await client.post(f"{base}/{second.event_id}/skip", headers=SAME_SITE)
        assert skipped.status_code == 303
        assert await parked_events(store, "browser-fragile") == []
        [audit] = await store.aggregates(AUDIT_TYPE)
        records = await store.read_aggregate(AUDIT_TYPE, audit.aggregate_id)
    actions = [msgspec.json.decode(r.data) for r in records]
    assert [(a["action"], a["outcome"]) for a in actions] == [
        ("retry", "failed again; still parked"),
        ("retry", "delivered"),
        ("skip", "skipped; no longer parked"),
    ]
    assert str(second.event_id) in actions[2]["subject"]


async def test_a_cross_site_post_is_refused_even_with_the_admin_cookie(filled: Any) -> None:
    store, facts = filled
    action = f"/subscriptions/browser-fragile/parked/{facts['parked'][0].event_id}/skip"
    async with serving(browser(store, admin_secret=SECRET)) as client:
        await client.post("/admin/login", data={"secret": SECRET}, headers=SAME_SITE)
        refused = await client.post(action, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        assert len(await parked_events(store, "browser-fragile")) == 2


async def test_the_store_is_named_without_its_credentials(postgres_dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from eventsignal.stores.postgres import PostgresStore

    parts = conninfo_to_dict(postgres_dsn)
    url = make_conninfo(postgres_dsn, password="s3cret-pw")
    store = PostgresStore(postgres_dsn, migrate=True)
    async with serving(create_app(store, url=url)) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert "s3cret-pw" not in page.text
    assert "password=***" in page.text
    assert str(parts.get("dbname", "")) in page.text
