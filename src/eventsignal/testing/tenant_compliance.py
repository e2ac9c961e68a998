"""A compliance suite for stores that keep tenants apart.

Subclass :class:`TenantCompliance` as :class:`~eventsignal.testing.EventStoreCompliance`:
``make_store`` returns a fresh, empty, opened :class:`~eventsignal.stores.tenancy.TenantAware`
store. Every check goes through :func:`~eventsignal.stores.tenancy.tenant_store` views, as an
application does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    ConcurrencyError,
    ConfigurationError,
    InvalidAggregateId,
)
from eventsignal.stores.base import EventStore, FoldReads, Snapshot, StoredEvent
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.stores.tenancy import TenantStore, tenant_store
from eventsignal.testing.compliance import Check, _read_all, folded_rows, make_events
from eventsignal.testing.expect import raises


def _views(store: EventStore) -> tuple[TenantStore, TenantStore, TenantStore]:
    return tenant_store(store, "acme"), tenant_store(store, "globex"), tenant_store(store, None)


def _identity(events: Any) -> list[tuple[str, str, int]]:
    return [(e.tenant, e.aggregate_id, e.version) for e in events]


async def _snapshot_of(view: TenantStore, aggregate_id: str, version: int) -> None:
    await view.save_snapshot(
        Snapshot(
            aggregate_name="thing",
            aggregate_id=aggregate_id,
            version=version,
            schema_version=1,
            state=b'{"v":%d}' % version,
            taken_at=datetime.now(UTC),
        )
    )


class TenantCompliance:
    """What every store that keeps tenants must do. Subclass it and provide :meth:`make_store`."""

    async def make_store(self) -> EventStore:
        """A fresh, empty, opened store that keeps tenants: implement it in the subclass."""
        raise NotImplementedError("return a fresh, empty, opened store")

    async def dispose_store(self, store: EventStore) -> None:
        """Release a store after its check (closes it by default)."""
        await store.close()

    def run_check(self, check: Check) -> None:
        """Run one check on a fresh store, in an event loop of its own."""

        async def body() -> None:
            store = await self.make_store()
            try:
                await check(store)
            finally:
                await self.dispose_store(store)

        asyncio.run(body())

    def test_the_same_id_in_two_tenants_is_two_aggregates(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, _ = _views(store)
            await acme.create("thing", "t-1", make_events("t-1", 0, 2))
            assert not await globex.exists("thing", "t-1")
            assert not await store.exists("thing", "t-1")
            await globex.create("thing", "t-1", make_events("t-1", 0, 1))
            await store.create("thing", "t-1", make_events("t-1", 0, 3))
            assert [e.version for e in await acme.read_aggregate("thing", "t-1")] == [1, 2]
            assert [e.version for e in await globex.read_aggregate("thing", "t-1")] == [1]
            assert len(await store.read_aggregate("thing", "t-1")) == 3
            assert {e.tenant for e in await acme.read_aggregate("thing", "t-1")} == {"acme"}
            with raises(AggregateExists):
                await acme.create("thing", "t-1")

        self.run_check(check)

    def test_what_a_rebuild_folds_keeps_to_the_tenant(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, _ = _views(store)
            await acme.create("thing", "t-1", make_events("t-1", 0, 3, name="Acme"))
            await globex.create("thing", "t-1", make_events("t-1", 0, 1, name="Globex"))
            await store.create("thing", "t-1", make_events("t-1", 0, 2, name="Default"))
            for view, names in ((acme, ["Acme"] * 3), (globex, ["Globex"])):
                rows = await folded_rows(view, "thing", "t-1")
                assert [row[1] for row in rows] == names
                whole = await view.read_aggregate("thing", "t-1")
                assert [tuple(row) for row in rows] == [(e.version, e.name, e.data) for e in whole]
            assert [row[0] for row in await folded_rows(acme, "thing", "t-1", 1)] == [2, 3]
            assert await folded_rows(globex, "thing", "t-2") == []
            assert isinstance(store, FoldReads)
            for tenant, names in (
                ("acme", ["Acme"] * 3),
                ("globex", ["Globex"]),
                ("", ["Default"] * 2),
            ):
                assert [
                    row[1] for row in await folded_rows(store, "thing", "t-1", tenant=tenant)
                ] == names

        self.run_check(check)

    def test_versions_are_checked_within_the_tenant(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, _ = _views(store)
            await acme.create("thing", "t-1", make_events("t-1", 0, 2))
            with raises(AggregateNotFound):
                await globex.append("thing", "t-1", 2, make_events("t-1", 2, 1))
            await globex.create("thing", "t-1")
            with raises(ConcurrencyError):
                await globex.append("thing", "t-1", 2, make_events("t-1", 2, 1))
            await globex.append("thing", "t-1", 0, make_events("t-1", 0, 1))
            await acme.append("thing", "t-1", 2, make_events("t-1", 2, 1))
            assert [e.version for e in await acme.read_aggregate("thing", "t-1", 1)] == [2, 3]

        self.run_check(check)

    def test_read_all_keeps_to_the_tenant_and_the_whole_log_names_each(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, every = _views(store)
            await acme.create("thing", "a", make_events("a", 0, 1))
            await globex.create("thing", "a", make_events("a", 0, 2))
            await store.create("thing", "a", make_events("a", 0, 1))
            await acme.append("thing", "a", 1, make_events("a", 1, 1))
            assert _identity(await acme.read_all()) == [("acme", "a", 1), ("acme", "a", 2)]
            assert _identity(await globex.read_all()) == [("globex", "a", 1), ("globex", "a", 2)]
            assert _identity(await store.read_all()) == [("", "a", 1)]
            everything = await every.read_all()
            assert _identity(everything) == [
                ("acme", "a", 1),
                ("globex", "a", 1),
                ("globex", "a", 2),
                ("", "a", 1),
                ("acme", "a", 2),
            ]
            positions = [e.position for e in everything]
            assert positions == sorted(set(positions))
            after = everything[1].position
            assert _identity(await acme.read_all(after, 10)) == [("acme", "a", 2)]
            assert _identity(await globex.read_all(0, 1)) == [("globex", "a", 1)]
            assert await every.head_position() == everything[-1].position
            assert await acme.head_position() == everything[-1].position
            assert await globex.head_position() == everything[2].position
            assert await store.head_position() == everything[3].position

        self.run_check(check)

    def test_a_tenant_without_streams_reads_nothing(self) -> None:
        async def check(store: EventStore) -> None:
            acme, _, every = _views(store)
            await store.create("thing", "a", make_events("a", 0, 2))
            assert await acme.read_all() == []
            assert await acme.aggregates() == []
            assert await acme.head_position() == 0
            assert not await acme.exists("thing", "a")
            assert await acme.read_aggregate("thing", "a") == []
            assert len(await every.read_all()) == 2

        self.run_check(check)

    def test_listings_keep_to_the_tenant(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, every = _views(store)
            await acme.create("thing", "a", make_events("a", 0, 1))
            await acme.create("other", "b")
            await globex.create("thing", "c", make_events("c", 0, 2))
            listed = {
                (i.tenant, i.aggregate_name, i.aggregate_id, i.version)
                for i in await acme.aggregates()
            }
            assert listed == {("acme", "thing", "a", 1), ("acme", "other", "b", 0)}
            assert [i.aggregate_id for i in await acme.aggregates("thing")] == ["a"]
            assert [i.aggregate_id for i in await globex.aggregates()] == ["c"]
            assert await store.aggregates() == []
            assert len(await every.aggregates()) == 3
            assert list(await store.tenants()) == ["acme", "globex"]  # type: ignore[attr-defined]

        self.run_check(check)

    def test_snapshots_keep_to_the_tenant(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, _ = _views(store)
            await acme.create("thing", "a", make_events("a", 0, 2))
            await globex.create("thing", "a", make_events("a", 0, 1))
            await _snapshot_of(acme, "a", 2)
            assert await globex.load_snapshot("thing", "a") is None
            found = await acme.load_snapshot("thing", "a")
            assert found is not None
            assert found.version == 2
            await _snapshot_of(globex, "a", 1)
            again = await acme.load_snapshot("thing", "a")
            assert again is not None
            assert again.version == 2

        self.run_check(check)

    def test_the_view_of_every_tenant_only_reads(self) -> None:
        async def check(store: EventStore) -> None:
            acme, _, every = _views(store)
            with raises(ConfigurationError):
                await every.create("thing", "a")
            await acme.create("thing", "a")
            with raises(ConfigurationError):
                await every.append("thing", "a", 0, make_events("a", 0, 1))
            with raises(InvalidAggregateId):
                tenant_store(store, "not a tenant!")
            with raises(InvalidAggregateId):
                tenant_store(store, "")

        self.run_check(check)

    def test_concurrent_writers_of_two_tenants_never_meet(self) -> None:
        async def check(store: EventStore) -> None:
            acme, globex, every = _views(store)
            ids = [f"t-{i}" for i in range(8)]
            for view in (acme, globex):
                for aggregate_id in ids:
                    await view.create("thing", aggregate_id)

            async def write(view: TenantStore, aggregate_id: str) -> None:
                for version in range(3):
                    events = make_events(aggregate_id, version, 1)
                    await view.append("thing", aggregate_id, version, events)

            await asyncio.gather(*(write(v, i) for v in (acme, globex) for i in ids))
            everything: list[StoredEvent] = list(await _read_all(every, 0, limit=10))
            assert len(everything) == 48
            for view in (acme, globex):
                own = await _read_all(view, 0, limit=10)
                assert {e.tenant for e in own} == {view.tenant}
                assert sorted(_identity(own)) == sorted(
                    (view.tenant, i, v) for i in ids for v in (1, 2, 3)
                )

        self.run_check(check)

    def test_subscription_state_is_kept_per_tenant(self) -> None:
        async def check(store: EventStore) -> None:
            if not isinstance(store, SubscriptionStore):
                return
            acme, globex, _ = _views(store)
            await acme.setup_subscriptions()
            async with acme.subscription_transaction() as state:
                await state.ensure("totals", 1, 0)
                assert await state.claim("totals", 0, "m", 0.0, 1e12) == 0
                assert await state.advance("totals", 0, "m", 0, 7, 0.0)
            async with globex.subscription_reads() as state:
                assert await state.progress("totals") is None
            async with acme.subscription_reads() as state:
                assert await state.progress("totals") == 7
                assert [row.name for row in await state.overview(0.0)] == ["totals"]
            async with globex.subscription_reads() as state:
                assert await state.overview(0.0) == []

        self.run_check(check)
