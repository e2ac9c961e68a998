"""A compliance suite for the second half of the store contract: subscription state.

Subclass :class:`SubscriptionStoreCompliance` in a pytest module and implement :meth:`make_store`
to return a fresh, empty, opened :class:`~eventsignal.stores.subscription_state.SubscriptionStore`
(and :meth:`dispose_store` if it needs more cleaning up than ``close()``)::

    class TestMyStoreSubscriptions(SubscriptionStoreCompliance):
        async def make_store(self) -> SubscriptionStore:
            store = MyStore(...)
            await store.open()
            return store

Every check goes through the contract alone. Times are handed to the store as arguments, so the
checks use a fixed clock of their own and never sleep on a lease. Each check runs in its own event
loop through :func:`asyncio.run`, so no asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.subscription_state import (
    Lease,
    StoredDocument,
    SubscriptionRow,
    SubscriptionStore,
)
from eventsignal.testing.compliance import make_events
from eventsignal.testing.expect import raises

Check = Callable[[SubscriptionStore], Awaitable[None]]

NAME = "orders"
OTHER = "invoices"  # sorts before NAME, so orderings by name are visible
T0 = 1_000_000.0  # the checks' clock: any value does, the store only compares them


class Abandon(Exception):
    """Raised inside a transaction to abandon it, as a failing handler would."""


class SubscriptionStoreCompliance:
    """The behaviour every store that keeps subscription state must show. Subclass it and provide
    :meth:`make_store`."""

    async def make_store(self) -> SubscriptionStore:
        """A fresh, empty, opened store for one check: implement it in the subclass."""
        raise NotImplementedError("return a fresh, empty, opened store")

    async def dispose_store(self, store: SubscriptionStore) -> None:
        """Release a store after its check (closes it by default)."""
        # A store that keeps subscription state keeps events too, as a rule: close it as one.
        if isinstance(store, EventStore):
            await store.close()

    def run_check(self, check: Check) -> None:
        """Run one check on a fresh store, in an event loop of its own."""

        async def scenario() -> None:
            store = await self.make_store()
            try:
                await store.setup_subscriptions()
                await store.setup_subscriptions()  # cheap and harmless the second time
                await check(store)
            finally:
                await self.dispose_store(store)

        asyncio.run(scenario())

    # Checkpoints

    def test_ensure_creates_partitions_once(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_reads() as reads:
                assert await reads.leases(NAME) == []
                assert await reads.progress(NAME) is None
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 3, 7)
                await tx.ensure(NAME, 3, 99)  # the partitions exist: they stay where they are
            async with store.subscription_reads() as reads:
                assert _places(await reads.leases(NAME)) == [
                    (0, 7, None),
                    (1, 7, None),
                    (2, 7, None),
                ]
                assert await reads.progress(NAME) == 7
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 3, 0)
                await tx.ensure(OTHER, 1, 0)  # another subscription, its own partitioning
            async with store.subscription_reads() as reads:
                assert await reads.progress(NAME) == 7
                assert _places(await reads.leases(OTHER)) == [(0, 0, None)]

        self.run_check(check)

    def test_ensure_refuses_another_partition_count(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 2, 5)
            for parts in (1, 4):
                async with store.subscription_transaction() as tx:
                    with raises(ConfigurationError) as refused:
                        await tx.ensure(NAME, parts, 0)
                    assert NAME in str(refused.value)
                    # The refusal changes nothing, even for a caller that carries on and commits.
                    assert _places(await tx.leases(NAME)) == [(0, 5, None), (1, 5, None)]
            async with store.subscription_reads() as reads:
                assert _places(await reads.leases(NAME)) == [(0, 5, None), (1, 5, None)]

        self.run_check(check)

    # Leases

    def test_free_partition_is_claimed_at_its_checkpoint(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 2, 5)
                assert await tx.claim(NAME, 0, "m-a", T0, T0 + 10) == 5
                # Its holder may claim it again; no such partition or subscription: nothing.
                assert await tx.claim(NAME, 0, "m-a", T0 + 1, T0 + 11) == 5
                assert await tx.claim(NAME, 2, "m-a", T0, T0 + 10) is None
                assert await tx.claim(OTHER, 0, "m-a", T0, T0 + 10) is None
            async with store.subscription_reads() as reads:
                leases = await reads.leases(NAME)
            assert _places(leases) == [(0, 5, "m-a"), (1, 5, None)]
            assert leases[0].lease_until == T0 + 11

        self.run_check(check)

    def test_leased_partition_is_taken_over_only_after_expiry(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 1, 3)
                assert await tx.claim(NAME, 0, "m-a", T0, T0 + 10) == 3
            async with store.subscription_transaction() as tx:
                assert await tx.claim(NAME, 0, "m-b", T0 + 5, T0 + 15) is None
                assert await tx.claim(NAME, 0, "m-b", T0 + 10, T0 + 20) is None  # not yet past
                assert await tx.claim(NAME, 0, "m-b", T0 + 10.5, T0 + 20) == 3
            async with store.subscription_transaction() as tx:
                assert await tx.claim(NAME, 0, "m-a", T0 + 11, T0 + 21) is None
            async with store.subscription_reads() as reads:
                assert await reads.leases(NAME) == [Lease(0, 3, "m-b", T0 + 20)]

        self.run_check(check)

    def test_renew_extends_the_members_leases(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 3, 0)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
                await tx.claim(NAME, 1, "m-a", T0, T0 + 10)
                await tx.claim(NAME, 2, "m-c", T0, T0 + 10)
            async with store.subscription_transaction() as tx:
                await tx.renew(NAME, "m-a", T0 + 100)
            async with store.subscription_transaction() as tx:
                assert await tx.members(NAME, T0 + 50) == ["m-a"]
                assert await tx.leases(NAME) == [
                    Lease(0, 0, "m-a", T0 + 100),
                    Lease(1, 0, "m-a", T0 + 100),
                    Lease(2, 0, "m-c", T0 + 10),
                ]
                assert await tx.claim(NAME, 0, "m-b", T0 + 50, T0 + 60) is None
                assert await tx.claim(NAME, 2, "m-b", T0 + 50, T0 + 60) == 0
                assert await tx.claim(NAME, 1, "m-b", T0 + 101, T0 + 111) == 0

        self.run_check(check)

    def test_release_hands_back_one_partition_or_all(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 3, 0)
                for part in range(3):
                    await tx.claim(NAME, part, "m-a", T0, T0 + 10)
                await tx.renew(NAME, "m-a", T0 + 10)
            async with store.subscription_transaction() as tx:
                await tx.release(NAME, "m-a", 0)
                await tx.release(NAME, "m-b", 1)  # not its partition: nothing happens
            async with store.subscription_reads() as reads:
                assert _owners(await reads.leases(NAME)) == [None, "m-a", "m-a"]
            async with store.subscription_transaction() as tx:
                assert await tx.members(NAME, T0) == ["m-a"]
                assert await tx.claim(NAME, 0, "m-b", T0, T0 + 10) == 0
                await tx.release(NAME, "m-a")
            async with store.subscription_transaction() as tx:
                assert _owners(await tx.leases(NAME)) == ["m-b", None, None]
                assert await tx.members(NAME, T0) == []
                assert await tx.claim(NAME, 1, "m-b", T0, T0 + 10) == 0

        self.run_check(check)

    def test_concurrent_claims_of_a_partition_one_wins(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 1, 0)

            async def claim(member: str) -> int | None:
                async with store.subscription_transaction() as tx:
                    got = await tx.claim(NAME, 0, member, T0, T0 + 10)
                    await asyncio.sleep(0.05)  # hold the transaction open over the other's
                    return got

            members = [f"m-{n}" for n in range(4)]
            results = await asyncio.gather(*(claim(member) for member in members))
            winners = [m for m, got in zip(members, results, strict=True) if got is not None]
            assert len(winners) == 1, results
            async with store.subscription_reads() as reads:
                assert _owners(await reads.leases(NAME)) == winners

        self.run_check(check)

    # Advancing

    def test_advance_is_a_compare_and_set(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 2, 0)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
                await tx.claim(NAME, 1, "m-b", T0, T0 + 10)
            async with store.subscription_transaction() as tx:
                assert await tx.advance(NAME, 0, "m-a", 0, 3, T0)
                assert not await tx.advance(NAME, 0, "m-a", 0, 5, T0)  # stale expectation
                assert not await tx.advance(NAME, 0, "m-b", 3, 5, T0)  # not the owner
                assert not await tx.advance(NAME, 1, "m-a", 0, 5, T0)  # someone else's
                assert not await tx.advance(NAME, 2, "m-a", 0, 5, T0)  # no such partition
                assert not await tx.advance(OTHER, 0, "m-a", 0, 5, T0)
                assert await tx.advance(NAME, 0, "m-a", 3, 8, T0)
                await tx.release(NAME, "m-a", 0)
                assert not await tx.advance(NAME, 0, "m-a", 8, 9, T0)  # handed back
            async with store.subscription_reads() as reads:
                assert _places(await reads.leases(NAME)) == [(0, 8, None), (1, 0, "m-b")]

        self.run_check(check)

    def test_concurrent_advances_one_wins(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 1, 0)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)

            async def advance(position: int) -> bool:
                async with store.subscription_transaction() as tx:
                    moved = await tx.advance(NAME, 0, "m-a", 0, position, T0)
                    await asyncio.sleep(0.05)  # hold the transaction open over the other's
                    return moved

            results = await asyncio.gather(*(advance(position) for position in (4, 5, 6)))
            assert sorted(results) == [False, False, True], results
            async with store.subscription_reads() as reads:
                assert await reads.progress(NAME) == (4, 5, 6)[results.index(True)]

        self.run_check(check)

    def test_a_lost_lease_cannot_commit_late(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 1, 0)
                assert await tx.claim(NAME, 0, "m-a", T0, T0 + 10) == 0
            # m-a pauses past its lease; m-b takes the partition over.
            async with store.subscription_transaction() as tx:
                assert await tx.claim(NAME, 0, "m-b", T0 + 11, T0 + 21) == 0
            # m-a wakes up and finishes what it was doing: its handler's writes, then its commit.
            with raises(Abandon):
                async with store.subscription_transaction(idle_limit=30) as tx:
                    event = _event(1)
                    await tx.put_documents([("totals", _document("a", 1, {"total": 5}))])
                    await tx.park(NAME, event, "late", 1, T0 + 12)
                    await tx.quarantine(1, "late", T0 + 12)
                    if not await tx.advance(NAME, 0, "m-a", 0, 1, T0 + 12):
                        raise Abandon
            async with store.subscription_reads() as reads:
                assert await reads.leases(NAME) == [Lease(0, 0, "m-b", T0 + 21)]
                assert await reads.documents("totals") == []
                assert await reads.parked() == []
                assert await reads.quarantined() == {}
            async with store.subscription_transaction() as tx:
                assert await tx.advance(NAME, 0, "m-b", 0, 1, T0 + 13)

        self.run_check(check)

    def test_a_transaction_that_raises_leaves_nothing_behind(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            with raises(Abandon):
                async with store.subscription_transaction() as tx:
                    await tx.ensure(NAME, 2, 0)
                    await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
                    await tx.renew(NAME, "m-a", T0 + 10)
                    assert await tx.advance(NAME, 0, "m-a", 0, 4, T0)
                    await tx.park(NAME, _event(3), "boom", 1, T0)
                    await tx.quarantine(3, "bad", T0)
                    await tx.put_documents([("totals", _document("a", 4, {"total": 1}))])
                    raise Abandon
            async with store.subscription_transaction() as tx:
                assert await tx.leases(NAME) == []
                assert await tx.progress(NAME) is None
                assert await tx.members(NAME, T0) == []
                assert await tx.overview(T0) == []
                assert await tx.parked() == []
                assert await tx.quarantined() == {}
                assert await tx.documents("totals") == []

        self.run_check(check)

    def test_writes_are_read_only_after_commit(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 1, 0)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
            async with store.subscription_transaction() as tx:
                assert await tx.advance(NAME, 0, "m-a", 0, 2, T0)
                await tx.park(NAME, _event(1), "boom", 1, T0)
                await tx.quarantine(2, "bad", T0)
                await tx.put_documents([("totals", _document("a", 2, {"total": 7}))])
                # The transaction sees its own writes; readers see none of them yet.
                assert await tx.progress(NAME) == 2
                assert [d.key for d in await tx.documents("totals")] == ["a"]
                try:
                    async with asyncio.timeout(5), store.subscription_reads() as reads:
                        assert await reads.progress(NAME) == 0
                        assert await reads.parked() == []
                        assert await reads.quarantined() == {}
                        assert await reads.document("totals", "a") is None
                except TimeoutError:
                    raise AssertionError("subscription_reads() waited for a writer") from None
            async with store.subscription_reads() as reads:
                assert await reads.progress(NAME) == 2
                assert [p.position for p in await reads.parked()] == [1]
                assert await reads.quarantined() == {2: "bad"}
                found = await reads.document("totals", "a")
                assert found is not None
                assert _json(found) == {"total": 7}

        self.run_check(check)

    # Members and progress

    def test_members_alive_are_listed_sorted(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.renew(NAME, "m-c", T0 + 10)
                await tx.renew(NAME, "m-a", T0 + 30)
                await tx.renew(NAME, "m-b", T0 + 5)
                await tx.renew(OTHER, "m-z", T0 + 100)
            async with store.subscription_transaction() as tx:
                assert await tx.members(NAME, T0) == ["m-a", "m-b", "m-c"]
                assert await tx.members(NAME, T0 + 6) == ["m-a", "m-c"]
                assert await tx.members(NAME, T0 + 10) == ["m-a", "m-c"]  # alive up to its end
                assert await tx.members(NAME, T0 + 31) == []
                assert await tx.members(OTHER, T0 + 31) == ["m-z"]
            # Reads list them too, though forgetting the long dead is left to transactions.
            async with store.subscription_reads() as reads:
                assert await reads.members(NAME, T0 + 10_000) == []
                assert await reads.members(NAME, T0 + 6) == ["m-a", "m-c"]
            async with store.subscription_transaction() as tx:
                # Forgetting the long dead forgets no one alive.
                assert await tx.members(NAME, T0 + 10_000) == []
                assert await tx.members(OTHER, T0 + 50) == ["m-z"]

        self.run_check(check)

    def test_progress_and_overview(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 3, 0)
                await tx.ensure(OTHER, 1, 4)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
                await tx.claim(NAME, 1, "m-a", T0, T0 + 10)
                await tx.claim(NAME, 2, "m-b", T0, T0 + 1)
                for part, position in enumerate((5, 2, 9)):
                    owner = "m-b" if part == 2 else "m-a"
                    assert await tx.advance(NAME, part, owner, 0, position, T0)
                await tx.park(NAME, _event(1), "boom", 1, T0)
            async with store.subscription_reads() as reads:
                assert await reads.progress(NAME) == 2
                assert await reads.progress(OTHER) == 4
                assert await reads.progress("unknown") is None
                rows = {row.name: row for row in await reads.overview(T0 + 5)}
            assert rows == {
                NAME: SubscriptionRow(NAME, 2, 3, 2, 1),  # m-b's lease is over at T0 + 5
                OTHER: SubscriptionRow(OTHER, 4, 1, 0, 0),
            }

        self.run_check(check)

    def test_reset_starts_over(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 2, 0)
                await tx.ensure(OTHER, 1, 0)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
                assert await tx.advance(NAME, 0, "m-a", 0, 5, T0)
                await tx.park(NAME, _event(1), "boom", 1, T0)
                await tx.park(NAME, _event(2), "boom", 1, T0)
                await tx.park(OTHER, _event(3), "boom", 1, T0)
            async with store.subscription_transaction() as tx:
                await tx.reset(NAME)
            async with store.subscription_transaction() as tx:
                assert _places(await tx.leases(NAME)) == [(0, 0, None), (1, 0, None)]
                assert await tx.progress(NAME) == 0
                assert await tx.parked(NAME) == []
                assert [p.position for p in await tx.parked(OTHER)] == [3]
                assert await tx.claim(NAME, 0, "m-b", T0 + 1, T0 + 10) == 0

        self.run_check(check)

    # Parked and quarantined events

    def test_parking_again_adds_the_attempts(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            event = _event(7, aggregate_id="cart-1")
            async with store.subscription_transaction() as tx:
                await tx.park(NAME, event, "boom", 3, T0)
            async with store.subscription_transaction() as tx:
                await tx.park(NAME, event, "bang", 2, T0 + 5)
            async with store.subscription_reads() as reads:
                [parked] = await reads.parked(NAME)
            assert parked.subscription == NAME
            assert parked.event_id == event.id
            assert parked.position == 7
            assert (parked.aggregate_name, parked.aggregate_id) == ("thing", "cart-1")
            assert (parked.version, parked.event_name) == (event.version, event.name)
            assert (parked.error, parked.attempts) == ("bang", 5)
            assert parked.parked_at == datetime.fromtimestamp(T0 + 5, UTC)

        self.run_check(check)

    def test_parked_events_listed_and_retried(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            first, second, third = _event(10), _event(20), _event(30)
            async with store.subscription_transaction() as tx:
                await tx.park(NAME, third, "boom", 1, T0)
                await tx.park(OTHER, second, "boom", 1, T0)
                await tx.park(NAME, first, "boom", 1, T0)
                await tx.park(OTHER, first, "boom", 1, T0)
            async with store.subscription_reads() as reads:
                every = [(p.subscription, p.position) for p in await reads.parked()]
                assert every == [(OTHER, 10), (OTHER, 20), (NAME, 10), (NAME, 30)]
                assert [p.position for p in await reads.parked(NAME)] == [10, 30]
                assert await reads.parked("unknown") == []
            async with store.subscription_transaction() as tx:
                await tx.unpark(NAME, first.id)  # retried: this subscription alone lets it go
                await tx.unpark(NAME, second.id)  # never parked there: nothing happens
            async with store.subscription_reads() as reads:
                assert [p.position for p in await reads.parked(NAME)] == [30]
                assert [p.position for p in await reads.parked(OTHER)] == [10, 20]

        self.run_check(check)

    def test_quarantine(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.quarantine(12, "bad", T0)
                await tx.quarantine(3, "worse", T0)
            async with store.subscription_reads() as reads:
                assert list((await reads.quarantined()).items()) == [(3, "worse"), (12, "bad")]
            async with store.subscription_transaction() as tx:
                await tx.quarantine(12, "still bad", T0 + 1)
                assert await tx.quarantined() == {3: "worse", 12: "still bad"}
                assert await tx.unquarantine(12)
                assert not await tx.unquarantine(12)
                assert not await tx.unquarantine(99)
            async with store.subscription_reads() as reads:
                assert await reads.quarantined() == {3: "worse"}

        self.run_check(check)

    # Read-model documents

    def test_documents_put_read_delete_and_clear(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.put_documents(
                    [
                        ("totals", _document("k2", 4, {"total": 2})),
                        ("totals", _document("k1", 3, {"total": 1, "items": ["x"]})),
                        ("carts", _document("k1", 9, {"open": True})),
                    ]
                )
            async with store.subscription_reads() as reads:
                one = await reads.document("totals", "k1")
                assert one is not None
                assert (one.key, one.position, _json(one)) == (
                    "k1",
                    3,
                    {"total": 1, "items": ["x"]},
                )
                assert await reads.document("totals", "k3") is None
                assert await reads.document("unknown", "k1") is None
                assert _listed(await reads.documents("totals")) == [("k1", 3), ("k2", 4)]
            async with store.subscription_transaction() as tx:
                await tx.put_documents([("totals", _document("k1", 5, {"total": 10}))])
                await tx.delete_documents([("totals", "k2"), ("totals", "absent"), ("none", "k")])
                await tx.delete_documents([])
                await tx.put_documents([])
            async with store.subscription_reads() as reads:
                [replaced] = await reads.documents("totals")
                assert (replaced.key, replaced.position, _json(replaced)) == (
                    "k1",
                    5,
                    {"total": 10},
                )
                assert _listed(await reads.documents("carts")) == [("k1", 9)]
            async with store.subscription_transaction() as tx:
                await tx.clear_documents("totals")
                await tx.clear_documents("unknown")
            async with store.subscription_reads() as reads:
                assert await reads.documents("totals") == []
                assert _listed(await reads.documents("carts")) == [("k1", 9)]

        self.run_check(check)

    def test_documents_commit_with_the_checkpoint(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            async with store.subscription_transaction() as tx:
                await tx.ensure(NAME, 1, 0)
                await tx.claim(NAME, 0, "m-a", T0, T0 + 10)
            async with store.subscription_transaction() as tx:
                await tx.put_documents(
                    [("totals", _document("a", 1, {"n": 1})), ("totals", _document("b", 2, {}))]
                )
                assert await tx.advance(NAME, 0, "m-a", 0, 2, T0)
            async with store.subscription_reads() as reads:
                assert await reads.progress(NAME) == 2
                assert _listed(await reads.documents("totals")) == [("a", 1), ("b", 2)]
            # A handler's writes whose checkpoint cannot move go with it.
            with raises(Abandon):
                async with store.subscription_transaction() as tx:
                    await tx.put_documents([("totals", _document("a", 3, {"n": 3}))])
                    await tx.delete_documents([("totals", "b")])
                    await tx.clear_documents("other")
                    if not await tx.advance(NAME, 0, "m-a", 0, 3, T0):  # stale: it is at 2
                        raise Abandon
            async with store.subscription_reads() as reads:
                assert await reads.progress(NAME) == 2
                assert _listed(await reads.documents("totals")) == [("a", 1), ("b", 2)]

        self.run_check(check)

    # Wake-ups

    def test_progress_wakes_those_waiting(self) -> None:
        async def check(store: SubscriptionStore) -> None:
            progress = store.subscription_progress
            assert store.subscription_progress is progress  # one per store
            waiting = asyncio.create_task(progress.moved(NAME, 30))
            await asyncio.sleep(0.05)
            progress.notify(OTHER)
            await asyncio.sleep(0.05)
            assert not waiting.done(), "woken by another subscription's progress"
            progress.notify(NAME)
            async with asyncio.timeout(5):
                await waiting
            # Nobody moving: back after the time given, not before.
            started = time.monotonic()
            async with asyncio.timeout(5):
                await progress.moved(NAME, 0.1)
            assert time.monotonic() - started >= 0.09

        self.run_check(check)


def _event(position: int, *, aggregate_id: str = "a") -> StoredEvent:
    """A stored event at ``position`` (subscription state needs no event store to hold it)."""
    [event] = make_events(aggregate_id, position - 1, 1)
    return msgspec.structs.replace(event, position=position)


def _document(key: str, position: int, data: Any) -> StoredDocument:
    return StoredDocument(key, msgspec.json.encode(data), position)


def _json(document: StoredDocument) -> Any:
    # Compared as JSON: a store may normalise the text (PostgreSQL's JSONB does).
    return msgspec.json.decode(document.data)


def _listed(documents: list[StoredDocument]) -> list[tuple[str, int]]:
    return [(d.key, d.position) for d in documents]


def _places(leases: list[Lease]) -> list[tuple[int, int, str | None]]:
    return [(lease.part, lease.position, lease.owner) for lease in leases]


def _owners(leases: list[Lease]) -> list[str | None]:
    return [lease.owner for lease in leases]
