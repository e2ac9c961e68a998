"""One Signal serving many tenants: the same ids in two tenants never meet on any read path."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from accounts import Deposit
from accounts import config as account_config_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import ConfigurationError, Event, Signal
from eventsignal.domain.errors import InvalidAggregateId, LifecycleNotSupported
from eventsignal.stores import EventStore, MemoryStore
from eventsignal.stores.tenancy import tenant_store
from eventsignal.subscriptions import Subscription, SubscriptionRunner, wait_until_processed

TENANTS = ("acme", "globex")
account_config = account_config_of()


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> EventStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from eventsignal.stores import SQLiteStore

        return SQLiteStore(tmp_path / "tenants.db", migrate=True)
    from eventsignal.stores import PostgresStore

    return PostgresStore(request.getfixturevalue("postgres_dsn"), migrate=True, max_size=4)


KINDS = ["memory", "sqlite", "postgres"]
# The PostgreSQL runs get the marker that ``-m "not postgres"`` deselects.
STORES = [pytest.param(k, marks=pytest.mark.postgres) if k == "postgres" else k for k in KINDS]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EventStore:
    return make_store(request.param, tmp_path, request)


async def test_the_same_id_in_two_tenants_is_two_aggregates(store: EventStore) -> None:
    async with Signal(account_config, store=store, telemetry=None) as signal:
        acme, globex = signal.for_tenant("acme"), signal.for_tenant("globex")
        await acme.create("a-1")
        await globex.create("a-1")
        await signal.create("a-1")
        await acme.handle_command("a-1", Deposit(10))
        await globex.handle_command("a-1", Deposit(3))
        assert (await acme.aggregate("a-1")).state.balance == 10
        assert (await globex.aggregate("a-1")).state.balance == 3
        assert (await signal.aggregate("a-1")).state.balance == 0
        assert [e.tenant for e in await acme.events("a-1")] == ["acme"]
        past = await globex.state_at("a-1", version=1)
        assert past.state.balance == 3
        assert signal.for_tenant("acme") is acme
        assert signal.for_tenant("") is signal
        assert acme.for_tenant("globex") is globex
    async with Signal(account_config, store=store, telemetry=None) as again:  # rebuilt
        assert (await again.for_tenant("acme").aggregate("a-1")).state.balance == 10
        assert (await again.for_tenant("globex").aggregate("a-1")).state.balance == 3
        assert (await again.aggregate("a-1")).state.balance == 0


async def test_tenants_share_one_pool() -> None:
    async with Signal(account_config, store=MemoryStore(), telemetry=None, pool_size=3) as signal:
        views = [signal.for_tenant(f"t{i}") for i in range(6)]
        for view in views:
            await view.create("same")
            await view.handle_command("same", Deposit(1))
        assert signal.pool_size == 3
        assert signal.pool_stats.evictions == 3
        for i, view in enumerate(views):  # the evicted ones are rebuilt, each within its tenant
            await view.handle_command("same", Deposit(i + 1))
            assert (await view.aggregate("same")).state.balance == 2 + i


async def test_subscribers_see_the_tenant_of_each_event() -> None:
    seen: list[tuple[str, str, int]] = []

    def subscriber(event: Event[Any]) -> None:
        seen.append((event.tenant, event.aggregate_id, event.version))

    async with Signal(
        account_config, store=MemoryStore(), telemetry=None, subscribers=[subscriber]
    ) as signal:
        await signal.for_tenant("acme").create("a", Deposit(1))
        await signal.create("a", Deposit(1))
        await signal.drain()
    assert seen == [("acme", "a", 1), ("", "a", 1)]


async def test_a_durable_subscription_runs_for_one_tenant_or_for_all(store: EventStore) -> None:
    totals: dict[tuple[str, str], int] = {}

    def count(event: Event[Any]) -> None:
        key = (event.tenant, event.aggregate_id)
        totals[key] = totals.get(key, 0) + event.data.amount

    def per_tenant(name: str) -> Subscription:
        return Subscription(name=name, handler=count, configs=[account_config])

    async with Signal(account_config, store=store, telemetry=None) as signal:
        for tenant in TENANTS:
            view = signal.for_tenant(tenant)
            await view.create("a", Deposit(1 if tenant == "acme" else 100))
            await view.handle_command("a", Deposit(2))
        await signal.create("a", Deposit(1000))

        acme = tenant_store(store, "acme")
        async with SubscriptionRunner(per_tenant("totals"), acme):
            await wait_until_processed(acme, "totals", await acme.head_position())
            assert totals == {("acme", "a"): 3}
            # read-your-writes from the tenant's Signal waits on the tenant's subscription
            await signal.for_tenant("acme").handle_command("a", Deposit(4), wait_for=["totals"])
            assert totals == {("acme", "a"): 7}

        totals.clear()
        every = tenant_store(store, None)
        async with SubscriptionRunner(per_tenant("totals"), every):
            await wait_until_processed(every, "totals", await every.head_position())
        assert totals == {("acme", "a"): 7, ("globex", "a"): 102, ("", "a"): 1000}

        totals.clear()  # the default tenant's subscription of the same name starts afresh
        async with SubscriptionRunner(per_tenant("totals"), store):
            await wait_until_processed(store, "totals", await store.head_position())
        assert totals == {("", "a"): 1000}


async def test_what_a_tenant_cannot_do_yet_is_refused_by_name() -> None:
    async with Signal(account_config, store=MemoryStore(), telemetry=None) as signal:
        acme = signal.for_tenant("acme")
        await acme.create("a")
        with pytest.raises(ConfigurationError, match="idempotency keys"):
            await acme.handle_command("a", Deposit(1), idempotency_key="k-1")
        with pytest.raises(LifecycleNotSupported, match="within a tenant"):
            await acme.archive("a")
        with pytest.raises(ConfigurationError, match="start the Signal"):
            await acme.start()
        with pytest.raises(InvalidAggregateId):
            signal.for_tenant("no spaces")
        with pytest.raises(InvalidAggregateId):
            signal.for_tenant("a@b")


async def test_a_store_without_tenants_says_so() -> None:
    class Plain:
        pass

    with pytest.raises(ConfigurationError, match="keeps no tenants"):
        tenant_store(Plain(), "acme")


# Two tenants running the same ids at once: each read path of one tenant holds exactly what
# that tenant's own commands made, as a model kept beside them predicts.
Step = tuple[int, int, int]  # tenant index, aggregate index, amount
steps = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 50)), min_size=1, max_size=30
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_no_read_path_of_one_tenant_returns_anothers_event(plan: list[Step]) -> None:
    asyncio.run(_run_plan(MemoryStore(), plan))


@settings(max_examples=8, deadline=None)
@given(plan=steps)
def test_no_read_path_of_one_tenant_returns_anothers_event_on_sqlite(plan: list[Step]) -> None:
    from eventsignal.stores import SQLiteStore

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run_plan(SQLiteStore(Path(folder) / "tenants.db", migrate=True), plan))


async def _run_plan(store: EventStore, plan: list[Step]) -> None:
    tenants = ("acme", "globex", "")
    model: dict[tuple[str, str], list[int]] = {}
    async with Signal(account_config, store=store, telemetry=None, pool_size=2) as signal:
        views = [signal.for_tenant(t) for t in tenants]

        async def run(tenant: int, aggregate: int, amount: int) -> None:
            view, key = views[tenant], (tenants[tenant], f"id-{aggregate}")
            if key not in model:
                model[key] = []
                await view.create(key[1])
            model[key].append(amount)
            await view.handle_command(key[1], Deposit(amount))

        # Each tenant's steps run in order; the tenants run concurrently.
        async def lane(tenant: int) -> None:
            for t, aggregate, amount in plan:
                if t == tenant:
                    await run(t, aggregate, amount)

        await asyncio.gather(*(lane(t) for t in range(3)))
        every = await tenant_store(store, None).read_all(0, 10_000)
        for index, tenant in enumerate(tenants):
            view = views[index]
            own = {k: v for k, v in model.items() if k[0] == tenant}
            scoped = tenant_store(store, tenant) if tenant else store
            listed = {(tenant, info.aggregate_id) for info in await scoped.aggregates()}
            assert listed == set(own)
            logged = [e for e in await scoped.read_all(0, 10_000)]
            assert {e.tenant for e in logged} <= {tenant}
            assert len(logged) == sum(len(v) for v in own.values())
            for (_, aggregate_id), amounts in own.items():
                assert (await view.aggregate(aggregate_id)).state.balance == sum(amounts)
                events = await view.events(aggregate_id)
                assert [e.data.amount for e in events] == amounts
                assert {e.tenant for e in events} == {tenant}
        assert len(every) == sum(len(v) for v in model.values())
    async with Signal(account_config, store=store, telemetry=None) as fresh:  # from the store
        for (tenant, aggregate_id), amounts in model.items():
            rebuilt = await fresh.for_tenant(tenant).aggregate(aggregate_id)
            assert rebuilt.state.balance == sum(amounts)


@pytest.mark.parametrize("target_kind", [k for k in KINDS if k != "postgres"])
async def test_a_copy_takes_every_tenant_along(
    store: EventStore, target_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from eventsignal.copying import copy_store, verify_copy

    async with Signal(account_config, store=store, telemetry=None) as signal:
        for tenant in (*TENANTS, ""):
            view = signal.for_tenant(tenant)
            await view.create("a", Deposit(1))
            await view.create("empty")
            await view.handle_command("a", Deposit(len(tenant) + 1))
    (tmp_path / "target").mkdir()
    target = make_store(target_kind, tmp_path / "target", request)
    await store.open()
    await target.open()
    try:
        report = await copy_store(store, target, batch=2)
        assert report.events == 6
        assert report.aggregates == 6
        assert (await verify_copy(store, target)).ok
    finally:
        await store.close()
        await target.close()
    async with Signal(account_config, store=target, telemetry=None) as copied:
        for tenant in (*TENANTS, ""):
            assert (await copied.for_tenant(tenant).aggregate("a")).state.balance == len(tenant) + 2
            assert (await copied.for_tenant(tenant).aggregate("empty")).version == 0


async def test_the_stream_browser_shows_one_tenant(store: EventStore) -> None:
    import httpx

    from eventsignal.browser.app import create_app

    async with Signal(account_config, store=store, telemetry=None) as signal:
        for tenant in TENANTS:
            view = signal.for_tenant(tenant)
            await view.create(f"{tenant}-only", Deposit(1))
            await view.create("shared", Deposit(11 if tenant == "acme" else 22))
    app = create_app(tenant_store(store, "acme"), configs=[account_config], live_seconds=0.3)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://browser") as client,
    ):
        found = await client.get("/aggregates", params={"q": ""})
        assert "acme-only" in found.text
        assert "globex-only" not in found.text
        stream = await client.get("/streams/account/shared")
        assert stream.status_code == 200
        assert re.search(r"amount\S*: 11\b", stream.text)
        assert not re.search(r"amount\S*: 22\b", stream.text)
        log = await client.get("/log")
        assert "globex" not in log.text
