"""A compliance suite that any :class:`~eventsignal.stores.EventStore` runs in its own tests.

Subclass :class:`EventStoreCompliance` in a pytest module and implement :meth:`make_store` to
return a fresh, empty, opened store (and :meth:`dispose_store` if it needs cleaning up)::

    class TestMyStore(EventStoreCompliance):
        async def make_store(self) -> EventStore:
            store = MyStore(...)
            await store.open()
            return store

Each check runs in its own event loop through :func:`asyncio.run`, so no asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import msgspec

from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    ConcurrencyError,
    EventSerializationError,
    IdempotencyKeyTooLong,
    SignalError,
)
from eventsignal.stores.base import (
    EventStore,
    FoldReads,
    FoldRow,
    PagedReads,
    StoredEvent,
    StoreLifecycle,
    StoreStats,
)
from eventsignal.stores.idempotency import (
    CommandKey,
    IdempotentStore,
    KeyRetention,
)
from eventsignal.testing.expect import raises


def make_events(
    aggregate_id: str,
    after_version: int,
    count: int,
    *,
    aggregate_name: str = "thing",
    name: str = "Happened",
) -> list[StoredEvent]:
    """``count`` stored events for one aggregate, numbered from ``after_version + 1``."""
    now = datetime.now(UTC)
    return [
        StoredEvent(
            id=uuid4(),
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            version=after_version + i,
            name=name,
            timestamp=now,
            data=b'{"n":%d}' % (after_version + i),
            metadata={"correlation_id": "c-1"} if i == 1 else {},
        )
        for i in range(1, count + 1)
    ]


Check = Callable[[EventStore], Awaitable[None]]


async def folded_rows(
    store: FoldReads, aggregate_name: str, aggregate_id: str, after_version: int = 0, **tenant: str
) -> list[FoldRow]:
    """Every row ``read_aggregate_data`` hands over, its chunks joined (each one checked to
    hold rows)."""
    rows: list[FoldRow] = []
    reader: Any = store.read_aggregate_data
    async for chunk in reader(aggregate_name, aggregate_id, after_version, **tenant):
        assert len(chunk) > 0
        rows.extend(chunk)
    return rows


class EventStoreCompliance:
    """The behaviour every event store must show. Subclass it and provide :meth:`make_store`."""

    async def make_store(self) -> EventStore:
        """A fresh, empty, opened store for one check: implement it in the subclass."""
        raise NotImplementedError("return a fresh, empty, opened store")

    async def dispose_store(self, store: EventStore) -> None:
        """Release a store after its check (closes it by default)."""
        await store.close()

    def run_check(self, check: Check) -> None:
        """Run one check on a fresh store, in an event loop of its own."""

        async def scenario() -> None:
            store = await self.make_store()
            try:
                await check(store)
            finally:
                await self.dispose_store(store)

        asyncio.run(scenario())

    # Signal's own checks

    def test_all_events_come_back(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            written = make_events("a", 0, 5)
            await store.append("thing", "a", 0, written)
            read = await store.read_aggregate("thing", "a")
            assert [e.version for e in read] == [1, 2, 3, 4, 5]
            for before, after in zip(written, read, strict=True):
                assert after.id == before.id
                assert after.name == before.name
                assert after.data == before.data
                assert after.metadata == before.metadata
                assert after.timestamp == before.timestamp
                assert after.timestamp.tzinfo is not None
                assert after.position > 0

        self.run_check(check)

    def test_version_order_even_when_appends_interleave(self) -> None:
        async def check(store: EventStore) -> None:
            for aggregate_id in ("a", "b"):
                await store.create("thing", aggregate_id)
            await store.append("thing", "b", 0, make_events("b", 0, 1))
            await store.append("thing", "a", 0, make_events("a", 0, 2))
            await store.append("thing", "b", 1, make_events("b", 1, 2))
            await store.append("thing", "a", 2, make_events("a", 2, 1))
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3]
            assert [e.version for e in await store.read_aggregate("thing", "b")] == [1, 2, 3]

        self.run_check(check)

    def test_only_the_requested_aggregate(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            await store.create("thing", "b")
            await store.create("other", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 2))
            await store.append("thing", "b", 0, make_events("b", 0, 3))
            await store.append("other", "a", 0, make_events("a", 0, 4, aggregate_name="other"))
            read = await store.read_aggregate("thing", "a")
            assert {(e.aggregate_name, e.aggregate_id) for e in read} == {("thing", "a")}
            assert len(read) == 2

        self.run_check(check)

    def test_a_page_of_a_stream(self) -> None:
        """Stores that read a page of a stream (:class:`~eventsignal.stores.base.PagedReads`)
        hand back the same events as ``read_aggregate``, ``limit`` at a time."""

        async def check(store: EventStore) -> None:
            if not isinstance(store, PagedReads):
                return
            await store.create("thing", "a")
            await store.create("thing", "b")
            await store.append("thing", "a", 0, make_events("a", 0, 7))
            await store.append("thing", "b", 0, make_events("b", 0, 2))
            whole = await store.read_aggregate("thing", "a")
            pages, after = [], 0
            while page := await store.read_aggregate_page("thing", "a", after, 3):
                assert len(page) <= 3
                pages.append([e.version for e in page])
                after = page[-1].version
            assert pages == [[1, 2, 3], [4, 5, 6], [7]]
            again = await store.read_aggregate_page("thing", "a", 2, 2)
            assert [e.id for e in again] == [e.id for e in whole[2:4]]
            assert await store.read_aggregate_page("thing", "nobody", 0, 5) == []

        self.run_check(check)

    def test_what_a_rebuild_folds(self) -> None:
        """Stores that read just what a rebuild folds (:class:`~eventsignal.stores.base.FoldReads`)
        hand back the version, name and data of the events ``read_aggregate`` returns."""

        async def check(store: EventStore) -> None:
            if not isinstance(store, FoldReads):
                return
            await store.create("thing", "a")
            await store.create("thing", "b")
            await store.create("other", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 4, name="Started"))
            await store.append("thing", "b", 0, make_events("b", 0, 2))
            await store.append("thing", "a", 4, make_events("a", 4, 3))
            await store.append("other", "a", 0, make_events("a", 0, 1, aggregate_name="other"))
            whole = await store.read_aggregate("thing", "a")
            rows = await folded_rows(store, "thing", "a")
            assert [tuple(row) for row in rows] == [(e.version, e.name, e.data) for e in whole]
            assert [row[1] for row in rows] == ["Started"] * 4 + ["Happened"] * 3
            assert all(type(row[2]) is bytes for row in rows)
            tail = await folded_rows(store, "thing", "a", 5)
            assert [tuple(row) for row in tail] == [tuple(row) for row in rows[5:]]
            assert await folded_rows(store, "thing", "a", 7) == []
            assert await folded_rows(store, "thing", "nobody") == []

        self.run_check(check)

    def test_used_id_is_taken(self) -> None:
        async def check(store: EventStore) -> None:
            assert not await store.exists("thing", "a")
            await store.create("thing", "a")
            assert await store.exists("thing", "a")
            with raises(AggregateExists) as taken:
                await store.create("thing", "a")
            assert taken.value.aggregate_id == "a"
            # The same id under another aggregate type is a different aggregate.
            await store.create("other", "a")

        self.run_check(check)

    # Ours

    def test_created_aggregate_without_events_exists(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "empty")
            assert await store.exists("thing", "empty")
            assert list(await store.read_aggregate("thing", "empty")) == []
            listed = await store.aggregates("thing")
            assert [(a.aggregate_id, a.version) for a in listed] == [("empty", 0)]

        self.run_check(check)

    def test_create_with_first_events_is_atomic(self) -> None:
        async def check(store: EventStore) -> None:
            positions = await store.create("thing", "a", make_events("a", 0, 2))
            assert len(positions) == 2
            read = await store.read_aggregate("thing", "a")
            assert [e.version for e in read] == [1, 2]
            assert [e.position for e in read] == list(positions)
            # A taken id stores none of the events offered with it.
            with raises(AggregateExists):
                await store.create("thing", "a", make_events("a", 0, 3))
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]
            assert list(await store.create("thing", "b")) == []
            assert await store.exists("thing", "b")

        self.run_check(check)

    def test_creation_can_be_backdated(self) -> None:
        async def check(store: EventStore) -> None:
            # A copy from another store keeps each aggregate's original moment of creation.
            moment = datetime(2021, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
            await store.create("thing", "old", make_events("old", 0, 1), created_at=moment)
            await store.create("thing", "empty", created_at=moment)
            with raises(AggregateExists):
                await store.create("thing", "old", created_at=datetime(2020, 1, 1, tzinfo=UTC))
            created = {a.aggregate_id: a.created_at for a in await store.aggregates("thing")}
            assert created == {"old": moment, "empty": moment}

        self.run_check(check)

    def test_unknown_aggregate(self) -> None:
        async def check(store: EventStore) -> None:
            assert not await store.exists("thing", "nope")
            assert list(await store.read_aggregate("thing", "nope")) == []
            with raises(AggregateNotFound) as missing:
                await store.append("thing", "nope", 0, make_events("nope", 0, 1))
            assert missing.value.aggregate_id == "nope"
            assert await store.head_position() == 0

        self.run_check(check)

    def test_expected_version_conflict(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 2))
            for stale in (0, 1, 3):
                with raises(ConcurrencyError) as conflict:
                    await store.append("thing", "a", stale, make_events("a", stale, 1))
                assert conflict.value.aggregate_id == "a"
                assert conflict.value.expected_version == stale
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]

        self.run_check(check)

    def test_concurrent_appends_at_one_version_one_wins(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            attempts = [store.append("thing", "a", 0, make_events("a", 0, 2)) for _ in range(8)]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            winners = [r for r in results if not isinstance(r, BaseException)]
            losers = [r for r in results if isinstance(r, BaseException)]
            assert len(winners) == 1, results
            assert all(isinstance(r, ConcurrencyError) for r in losers), losers
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]

        self.run_check(check)

    def test_multi_event_append_is_atomic(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 1))
            # Version 1 is taken, 2 and 3 are free: a store that is not atomic would keep them.
            with raises(ConcurrencyError):
                await store.append("thing", "a", 0, make_events("a", 0, 3))
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1]
            positions = await store.append("thing", "a", 1, make_events("a", 1, 3))
            assert len(positions) == 3
            assert list(positions) == sorted(positions)
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3, 4]

        self.run_check(check)

    def test_read_from_version(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 6))
            tail = await store.read_aggregate("thing", "a", after_version=4)
            assert [e.version for e in tail] == [5, 6]

        self.run_check(check)

    def test_global_order(self) -> None:
        async def check(store: EventStore) -> None:
            written: list[StoredEvent] = []
            for aggregate_id in ("a", "b", "c"):
                await store.create("thing", aggregate_id)
            versions = {"a": 0, "b": 0, "c": 0}
            for round_ in range(4):
                for aggregate_id in ("c", "a", "b"):
                    batch = make_events(aggregate_id, versions[aggregate_id], 1 + round_ % 2)
                    await store.append("thing", aggregate_id, versions[aggregate_id], batch)
                    versions[aggregate_id] += len(batch)
                    written.extend(batch)
            everything = await _read_all(store, 0, limit=5)
            assert [e.id for e in everything] == [e.id for e in written]
            positions = [e.position for e in everything]
            assert positions == sorted(set(positions))
            assert await store.head_position() == positions[-1]
            middle = positions[len(positions) // 2]
            after = await _read_all(store, middle, limit=3)
            assert [e.position for e in after] == [p for p in positions if p > middle]

        self.run_check(check)

    def test_positions_returned_match_stored(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            positions = await store.append("thing", "a", 0, make_events("a", 0, 3))
            read = await store.read_aggregate("thing", "a")
            assert [e.position for e in read] == list(positions)

        self.run_check(check)

    def test_followers_are_woken_by_appends(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            head = await store.head_position()
            follower = asyncio.create_task(store.wait_for_events(head))
            await asyncio.sleep(0.05)
            await store.append("thing", "a", 0, make_events("a", 0, 1))
            async with asyncio.timeout(5):
                await follower
            # Already past the position: returns at once.
            async with asyncio.timeout(5):
                await store.wait_for_events(head)

        self.run_check(check)

    def test_aggregates_listing(self) -> None:
        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            await store.create("thing", "b")
            await store.create("other", "x")
            await store.append("thing", "b", 0, make_events("b", 0, 3))
            listed = {(a.aggregate_id, a.version) for a in await store.aggregates("thing")}
            assert listed == {("a", 0), ("b", 3)}
            assert len(await store.aggregates()) == 3

        self.run_check(check)

    def test_the_shared_life_cycle_and_counters(self) -> None:
        async def check(store: EventStore) -> None:
            assert isinstance(store, StoreLifecycle)
            assert store.is_open
            async with store as same:  # counted: the inner close leaves it open
                assert same is store
            assert store.is_open
            before = getattr(store, "stats", None)
            assert isinstance(before, StoreStats)
            await store.create("thing", "a", make_events("a", 0, 2))
            await store.append("thing", "a", 2, make_events("a", 2, 3))
            after = getattr(store, "stats", None)
            assert isinstance(after, StoreStats)
            assert (after.appends - before.appends, after.events - before.events) == (2, 5)
            assert 1 <= after.transactions - before.transactions <= 2

        self.run_check(check)

    def test_metadata_no_store_could_keep_is_refused(self) -> None:
        bad: list[dict[object, object]] = [
            {"k": 5},
            {"k": None},
            {7: "v"},
            {"k": "a\x00b"},
            {"k": "\ud800"},
        ]

        async def check(store: EventStore) -> None:
            await store.create("thing", "a")
            for metadata in bad:
                events = [msgspec.structs.replace(make_events("a", 0, 1)[0], metadata=metadata)]
                with raises(EventSerializationError) as refused:
                    await store.append("thing", "a", 0, events)
                assert refused.value.aggregate_id == "a"
                assert refused.value.event_name == "Happened"
                assert "metadata" in str(refused.value)
                with raises(EventSerializationError):
                    await store.create("thing", "b", events=[_renamed(events[0], "b")])
            assert await store.read_aggregate("thing", "a") == []
            assert not await store.exists("thing", "b")
            assert await store.read_all(0) == []

        self.run_check(check)

    # Idempotency keys (eventsignal.stores.idempotency)

    def test_a_key_is_recorded_with_its_events(self) -> None:
        async def check(store: EventStore) -> None:
            keyed = _idempotent(store)
            await store.create("thing", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 1))
            assert await keyed.find_command("thing", "a", "k-1") is None
            key = _key("k-1", "d1")
            positions = await keyed.append_keyed("thing", "a", 1, make_events("a", 1, 2), key)
            assert [e.position for e in await store.read_aggregate("thing", "a", 1)] == list(
                positions
            )
            found = await keyed.find_command("thing", "a", "k-1")
            assert found is not None
            assert (found.key, found.digest, found.version) == ("k-1", "d1", 3)
            assert found.recorded_at == key.recorded_at
            # Keys are per aggregate: the same key elsewhere is another command.
            assert await keyed.find_command("thing", "b", "k-1") is None
            assert await keyed.find_command("other", "a", "k-1") is None

        self.run_check(check)

    def test_a_used_key_stores_nothing(self) -> None:
        async def check(store: EventStore) -> None:
            keyed = _idempotent(store)
            await store.create("thing", "a")
            await keyed.append_keyed("thing", "a", 0, make_events("a", 0, 1), _key("k"))
            with raises(CommandKeyTaken) as taken:
                await keyed.append_keyed("thing", "a", 1, make_events("a", 1, 1), _key("k"))
            assert (taken.value.aggregate_id, taken.value.key) == ("a", "k")
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1]
            found = await keyed.find_command("thing", "a", "k")
            assert found is not None
            assert found.version == 1

        self.run_check(check)

    def test_a_refused_append_records_no_key(self) -> None:
        async def check(store: EventStore) -> None:
            keyed = _idempotent(store)
            await store.create("thing", "a")
            await store.append("thing", "a", 0, make_events("a", 0, 1))
            with raises(ConcurrencyError):
                await keyed.append_keyed("thing", "a", 0, make_events("a", 0, 2), _key("k"))
            with raises(AggregateNotFound):
                await keyed.append_keyed("thing", "b", 0, make_events("b", 0, 1), _key("k"))
            assert await keyed.find_command("thing", "a", "k") is None
            assert await keyed.find_command("thing", "b", "k") is None
            # The key is still free for the command's retry.
            await keyed.append_keyed("thing", "a", 1, make_events("a", 1, 1), _key("k"))
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]

        self.run_check(check)

    def test_a_keyed_creation(self) -> None:
        async def check(store: EventStore) -> None:
            keyed = _idempotent(store)
            await keyed.create_keyed("thing", "a", make_events("a", 0, 2), _key("new-a"))
            await keyed.create_keyed("thing", "empty", [], _key("new-empty"))
            found = await keyed.find_command("thing", "a", "new-a")
            assert found is not None
            assert found.version == 2
            empty = await keyed.find_command("thing", "empty", "new-empty")
            assert empty is not None
            assert empty.version == 0
            with raises(SignalError) as refused:
                await keyed.create_keyed("thing", "a", make_events("a", 0, 1), _key("new-a"))
            assert isinstance(refused.value, AggregateExists | CommandKeyTaken), refused.value
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]

        self.run_check(check)

    def test_keys_any_text_up_to_the_limit(self) -> None:
        async def check(store: EventStore) -> None:
            keyed = _idempotent(store)
            await store.create("thing", "a")
            odd = " ключ: ✓ 'quoted' \\ / . * > "
            longest = "k" * 200
            await keyed.append_keyed("thing", "a", 0, make_events("a", 0, 1), _key(odd))
            await keyed.append_keyed("thing", "a", 1, make_events("a", 1, 1), _key(longest))
            assert (await keyed.find_command("thing", "a", odd)) is not None
            assert (await keyed.find_command("thing", "a", longest)) is not None
            assert await keyed.find_command("thing", "a", odd.strip()) is None
            with raises(IdempotencyKeyTooLong) as too_long:
                await keyed.append_keyed(
                    "thing", "a", 2, make_events("a", 2, 1), _key(longest + "k")
                )
            assert (too_long.value.aggregate_id, too_long.value.limit) == ("a", 200)
            assert len(await store.read_aggregate("thing", "a")) == 2

        self.run_check(check)

    def test_keys_kept_as_retention_says(self) -> None:
        async def check(store: EventStore) -> None:
            keyed = _idempotent(store)
            keep_two = KeyRetention(keep=2, max_age=None)
            await store.create("thing", "a")
            for version, name in enumerate(["k1", "k2", "k3"]):
                events = make_events("a", version, 1)
                await keyed.append_keyed("thing", "a", version, events, _key(name), keep_two)
            kept = [
                name
                for name in ("k1", "k2", "k3")
                if await keyed.find_command("thing", "a", name, keep_two) is not None
            ]
            assert kept == ["k2", "k3"]
            # By age: a key recorded two days ago is gone once a newer one is recorded.
            a_day = KeyRetention(keep=100, max_age=timedelta(days=1))
            await store.create("thing", "b")
            old = _key("old", at=datetime.now(UTC) - timedelta(days=2))
            await keyed.append_keyed("thing", "b", 0, make_events("b", 0, 1), old, a_day)
            await keyed.append_keyed("thing", "b", 1, make_events("b", 1, 1), _key("new"), a_day)
            assert await keyed.find_command("thing", "b", "new", a_day) is not None
            assert await keyed.find_command("thing", "b", "old", a_day) is None

        self.run_check(check)


def _idempotent(store: EventStore) -> IdempotentStore:
    assert isinstance(store, IdempotentStore), f"{type(store).__name__} keeps no idempotency keys"
    return cast(IdempotentStore, store)


def _key(key: str, digest: str = "", *, at: datetime | None = None) -> CommandKey:
    return CommandKey(key=key, digest=digest, recorded_at=at or datetime.now(UTC))


def _renamed(event: StoredEvent, aggregate_id: str) -> StoredEvent:
    return msgspec.structs.replace(event, aggregate_id=aggregate_id)


async def _read_all(store: EventStore, after: int, *, limit: int) -> Sequence[StoredEvent]:
    """Page through ``read_all`` to its end."""
    out: list[StoredEvent] = []
    while True:
        page = await store.read_all(after, limit)
        if not page:
            return out
        assert len(page) <= limit
        out.extend(page)
        after = page[-1].position
