"""A compliance suite for the DCB view (``store.dcb``) of any store, from the cases of the
dynamic consistency boundary specification and the pitfalls other implementations met.

Subclass :class:`DcbCompliance` in a pytest module and implement :meth:`make_store` to return a
fresh, empty, opened store that has a ``dcb`` view::

    class TestMyStoreDcb(DcbCompliance):
        async def make_store(self) -> EventStore:
            store = MyStore(...)
            await store.open()
            return store

Each check runs in its own event loop through :func:`asyncio.run`, so no asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from eventsignal.domain.dcb import AppendCondition, DcbEvent, Query, QueryItem
from eventsignal.domain.errors import AppendConditionFailed, ConcurrencyError, ConfigurationError
from eventsignal.stores.base import EventStore
from eventsignal.stores.dcb import DcbStore
from eventsignal.testing.compliance import make_events
from eventsignal.testing.expect import raises


def event(type_: str, *tags: str, data: bytes = b"{}") -> DcbEvent:
    """A DCB event of ``type_`` carrying ``tags``."""
    return DcbEvent(type_, data, tags)


def only(*types: str, tags: tuple[str, ...] = ()) -> Query:
    """A query of one item."""
    return Query([QueryItem(types=types, tags=tags)])


def tagged(*tags: str) -> Query:
    return Query([QueryItem(tags=tags)])


Check = Callable[[Any, DcbStore], Awaitable[None]]


class DcbCompliance:
    """What every store's DCB view must do. Subclass it and provide :meth:`make_store`."""

    async def make_store(self) -> EventStore:
        """A fresh, empty, opened store with a ``dcb`` view (each check gets its own)."""
        raise NotImplementedError("return a fresh, empty, opened store with a dcb view")

    async def dispose_store(self, store: EventStore) -> None:
        """Release a store :meth:`make_store` made; by default, close it."""
        await store.close()

    def run_check(self, check: Check) -> None:
        """Run one check on a store of its own, in an event loop of its own."""

        async def scenario() -> None:
            store = await self.make_store()
            try:
                await check(store, store.dcb)  # type: ignore[attr-defined]
            finally:
                await self.dispose_store(store)

        asyncio.run(scenario())

    # Reading

    def test_an_empty_store_reads_nothing(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            assert list(await dcb.read(Query.all())) == []
            assert list(await dcb.read(tagged("a"))) == []

        self.run_check(check)

    def test_appended_events_read_back_with_type_data_tags_and_metadata(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            sent = DcbEvent("Opened", b'{"n":1}', ("a", "b"), {"correlation_id": "c-1"})
            position = await dcb.append(sent)
            (read,) = await dcb.read(Query.all())
            assert read.position == position > 0
            assert read.event.type == "Opened"
            assert read.event.data == b'{"n":1}'
            assert set(read.event.tags) == {"a", "b"}
            assert dict(read.event.metadata) == {"correlation_id": "c-1"}

        self.run_check(check)

    def test_positions_are_unique_and_increasing(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            last = await dcb.append([event("A"), event("B"), event("C")])
            following = await dcb.append(event("D"))
            assert following > last
            positions = [e.position for e in await dcb.read(Query.all())]
            assert positions == sorted(set(positions))
            assert positions[2] == last
            assert positions[3] == following
            assert [e.event.type for e in await dcb.read(Query.all())] == ["A", "B", "C", "D"]

        self.run_check(check)

    def test_read_by_type(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append([event("A", "x"), event("B", "x"), event("C"), event("A")])
            read = await dcb.read(only("A", "C"))
            assert [e.event.type for e in read] == ["A", "C", "A"]

        self.run_check(check)

    def test_read_by_tags_needs_every_tag(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append(
                [event("A", "x"), event("B", "x", "y"), event("C", "y"), event("D", "y", "x", "z")]
            )
            assert [e.event.type for e in await dcb.read(tagged("x"))] == ["A", "B", "D"]
            assert [e.event.type for e in await dcb.read(tagged("x", "y"))] == ["B", "D"]
            assert [e.event.type for e in await dcb.read(tagged("x", "q"))] == []

        self.run_check(check)

    def test_read_by_type_and_tags(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append([event("A", "x"), event("B", "x"), event("A", "y")])
            assert [e.event.type for e in await dcb.read(only("A", tags=("x",)))] == ["A"]
            assert [e.event.tags for e in await dcb.read(only("A", "B", tags=("x",)))] == [
                ("x",),
                ("x",),
            ]

        self.run_check(check)

    def test_items_are_ored_and_an_event_comes_once(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append([event("A", "x"), event("B", "y"), event("C", "z")])
            query = Query([QueryItem(types=["A"]), QueryItem(tags=["y"]), QueryItem(tags=["x"])])
            assert [e.event.type for e in await dcb.read(query)] == ["A", "B"]

        self.run_check(check)

    def test_read_after_a_position_and_with_a_limit(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            for n in range(6):
                await dcb.append(event("A" if n % 2 else "B", "x"))
            every = await dcb.read(Query.all())
            cut = every[2].position
            assert [e.position for e in await dcb.read(Query.all(), after=cut)] == [
                e.position for e in every[3:]
            ]
            assert [e.position for e in await dcb.read(only("A"), after=cut)] == [
                e.position for e in every[3:] if e.event.type == "A"
            ]
            assert [e.position for e in await dcb.read(tagged("x"), limit=2)] == [
                e.position for e in every[:2]
            ]
            assert [e.position for e in await dcb.read(tagged("x"), after=cut, limit=1)] == [
                every[3].position
            ]
            assert list(await dcb.read(Query.all(), limit=0)) == []
            assert list(await dcb.read(Query.all(), after=every[-1].position)) == []

        self.run_check(check)

    # Appending with a condition

    def test_a_condition_fails_when_a_matching_event_exists(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append(event("A", "x"))
            head = await store.head_position()
            with raises(AppendConditionFailed) as failed:
                await dcb.append(event("B", "x"), AppendCondition(tagged("x")))
            assert isinstance(failed.value, ConcurrencyError)
            assert failed.value.after is None
            assert await store.head_position() == head  # nothing stored

        self.run_check(check)

    def test_a_condition_passes_when_nothing_matches(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append([event("A", "x"), event("B", "y")])
            await dcb.append(event("C", "z"), AppendCondition(tagged("z")))
            await dcb.append(event("C", "x"), AppendCondition(only("B", tags=("x",))))
            await dcb.append(event("D", "x"), AppendCondition(tagged("x", "y")))
            assert len(await dcb.read(Query.all())) == 5

        self.run_check(check)

    def test_a_condition_counts_only_events_after_its_position(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            first = await dcb.append(event("A", "x"))
            await dcb.append(event("B", "x"), AppendCondition(tagged("x"), after=first))
            with raises(AppendConditionFailed) as failed:
                await dcb.append(event("C", "x"), AppendCondition(tagged("x"), after=first))
            assert failed.value.after == first
            # Events that match nothing in the query do not count, whatever their position.
            last = await dcb.append(event("D", "y"))
            await dcb.append(event("E", "y"), AppendCondition(tagged("x"), after=last - 1))

        self.run_check(check)

    def test_a_condition_on_every_event(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append(event("A"), AppendCondition(Query.all()))  # empty store: passes
            head = await dcb.append(event("B"))
            with raises(AppendConditionFailed):
                await dcb.append(event("C"), AppendCondition(Query.all()))
            with raises(AppendConditionFailed):
                await dcb.append(event("C"), AppendCondition(Query.all(), after=head - 1))
            await dcb.append(event("C"), AppendCondition(Query.all(), after=head))

        self.run_check(check)

    def test_a_failed_condition_stores_none_of_the_events(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append(event("A", "x"))
            with raises(AppendConditionFailed):
                await dcb.append(
                    [event("B", "y"), event("C", "z")], AppendCondition(Query([QueryItem(["A"])]))
                )
            assert [e.event.type for e in await dcb.read(Query.all())] == ["A"]

        self.run_check(check)

    def test_an_empty_append_is_refused_and_stores_nothing(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            with raises(ConfigurationError):
                await dcb.append([])
            with raises(ConfigurationError):
                await dcb.append([], AppendCondition(Query.all()))
            assert await store.head_position() == 0

        self.run_check(check)

    def test_writers_racing_on_one_boundary_commit_once(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append(event("Seeded", "seat"))
            (seen,) = await dcb.read(tagged("seat"))
            condition = AppendCondition(tagged("seat"), after=seen.position)
            outcomes = await asyncio.gather(
                *(dcb.append(event("Taken", "seat", f"s{n}"), condition) for n in range(8)),
                return_exceptions=True,
            )
            won = [o for o in outcomes if isinstance(o, int)]
            lost = [o for o in outcomes if isinstance(o, AppendConditionFailed)]
            assert len(won) == 1, outcomes
            assert len(lost) == 7, outcomes
            assert len(await dcb.read(tagged("seat"))) == 2

        self.run_check(check)

    def test_concurrent_appends_decide_as_if_one_after_the_other(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await dcb.append(event("Warm"))
            first, second, third = await asyncio.gather(
                dcb.append(event("X", "x")),
                dcb.append(event("Y", "y"), AppendCondition(tagged("x"))),  # fails: x is there
                dcb.append(event("Z", "z"), AppendCondition(tagged("y"))),  # passes: y is not
                return_exceptions=True,
            )
            assert isinstance(first, int)
            assert isinstance(second, AppendConditionFailed)
            assert second.position == first
            assert isinstance(third, int)
            assert [e.event.type for e in await dcb.read(Query.all())] == ["Warm", "X", "Z"]

        self.run_check(check)

    def test_writers_on_disjoint_boundaries_never_fail_each_other(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            outcomes = await asyncio.gather(
                *(
                    dcb.append(event("Taken", f"seat-{n}"), AppendCondition(tagged(f"seat-{n}")))
                    for n in range(16)
                )
            )
            assert len(set(outcomes)) == 16
            assert len(await dcb.read(only("Taken"))) == 16

        self.run_check(check)

    # One log with the aggregates

    def test_aggregate_events_carry_their_aggregate_as_a_tag(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await store.create("thing", "a", make_events("a", 0, 2))
            await store.create("thing", "b", make_events("b", 0, 1))
            await dcb.append(event("Noted", "thing:a"))
            read = await dcb.read(tagged("thing:a"))
            assert [e.event.type for e in read] == ["Happened", "Happened", "Noted"]
            assert read[0].event.tags == ("thing:a",)
            assert read[0].event.data == b'{"n":1}'
            assert [e.event.type for e in await dcb.read(only("Happened"))] == ["Happened"] * 3
            assert list(await dcb.read(only("Noted", tags=("thing:b",)))) == []

        self.run_check(check)

    def test_a_condition_guards_an_aggregate(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await store.create("thing", "a", make_events("a", 0, 1))
            (seen,) = await dcb.read(tagged("thing:a"))
            guard = AppendCondition(tagged("thing:a"), after=seen.position)
            await dcb.append(event("Unrelated", "thing:b"), guard)
            await store.append("thing", "a", 1, make_events("a", 1, 1))
            with raises(AppendConditionFailed):
                await dcb.append(event("Noted", "thing:a"), guard)

        self.run_check(check)

    def test_dcb_events_take_their_place_in_the_global_order(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            await store.create("thing", "a", make_events("a", 0, 1))
            position = await dcb.append(event("Noted", "first-tag", "second"))
            await store.append("thing", "a", 1, make_events("a", 1, 1))
            every = await store.read_all()
            assert [e.name for e in every] == ["Happened", "Noted", "Happened"]
            noted = every[1]
            assert noted.position == position
            assert noted.aggregate_name == ""
            assert noted.aggregate_id == "first-tag"  # the partition key
            assert noted.version == position
            assert await store.head_position() == every[-1].position
            assert await store.read_aggregate("thing", "a") == [every[0], every[2]]

        self.run_check(check)

    def test_followers_wake_for_dcb_events(self) -> None:
        async def check(store: EventStore, dcb: DcbStore) -> None:
            head = await store.head_position()
            waiting = asyncio.ensure_future(store.wait_for_events(head))
            await asyncio.sleep(0.01)
            await dcb.append(event("A", "x"))
            async with asyncio.timeout(5):
                await waiting

        self.run_check(check)
