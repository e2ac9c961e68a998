"""A compliance suite for stores that archive, restore, delete and truncate streams.

Subclass :class:`LifecycleCompliance` as :class:`~eventsignal.testing.EventStoreCompliance`:
``make_store`` returns a fresh, empty, opened store that is also a
:class:`~eventsignal.stores.lifecycle.LifecycleStore`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from eventsignal.domain.errors import (
    AggregateArchived,
    AggregateDeleted,
    AggregateExists,
    NoUsableSnapshot,
)
from eventsignal.stores.base import EventStore, Snapshot, SnapshotStore, StoredEvent
from eventsignal.stores.lifecycle import DELETION_EVENT, LifecycleStore, decode_deletion
from eventsignal.testing.compliance import Check, _read_all, make_events
from eventsignal.testing.expect import raises


def _history(events: list[StoredEvent]) -> list[tuple[Any, ...]]:
    """What must survive a round trip: identity, place and content of every event."""
    return [
        (e.id, e.aggregate_name, e.aggregate_id, e.version, e.position, e.name, e.data)
        for e in events
    ]


async def _interleaved(store: EventStore) -> None:
    """Aggregates a and b, their events interleaved in the log: a1 b1 a2 a3 b2 a4."""
    await store.create("thing", "a", make_events("a", 0, 1))
    await store.create("thing", "b", make_events("b", 0, 1))
    await store.append("thing", "a", 1, make_events("a", 1, 2))
    await store.append("thing", "b", 1, make_events("b", 1, 1))
    await store.append("thing", "a", 3, make_events("a", 3, 1))


def _lifecycle(store: EventStore) -> LifecycleStore:
    assert isinstance(store, LifecycleStore), f"{type(store).__name__} has no stream lifecycle"
    return store


async def _snapshot(store: EventStore, aggregate_id: str, version: int) -> None:
    if isinstance(store, SnapshotStore):
        snapshots: SnapshotStore = store
    else:  # a SQL store keeps snapshots in tables of its own
        from eventsignal.stores.sql import SQLStore
        from eventsignal.stores.sql.snapshots import SQLSnapshotStore

        assert isinstance(store, SQLStore)
        snapshots = SQLSnapshotStore(store)
    await snapshots.save_snapshot(
        Snapshot(
            aggregate_name="thing",
            aggregate_id=aggregate_id,
            version=version,
            schema_version=1,
            state=b"{}",
            taken_at=datetime.now(UTC),
        )
    )


class LifecycleCompliance:
    """Archive, restore, delete, truncate: what every store that offers them must show.

    Subclass it beside :class:`EventStoreCompliance`, with the same ``make_store`` (and
    ``dispose_store``, if needed).
    """

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

    def test_archive_and_restore_round_trip(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            before = await _read_all(store, 0, limit=2)
            assert not await streams.any_changed()
            result = await streams.archive("thing", "a")
            assert await streams.any_changed()
            assert result.events == 4
            log = await _read_all(store, 0, limit=2)
            assert [(e.aggregate_id, e.version) for e in log] == [("b", 1), ("b", 2)]
            assert await store.read_aggregate("thing", "a") == []
            status = await streams.stream_status("thing", "a")
            assert (status.state, status.version, status.events, status.archived) == (
                "archived",
                4,
                0,
                4,
            )
            assert status.location
            with raises(AggregateArchived) as raised:
                await store.append("thing", "a", 4, make_events("a", 4, 1))
            assert "archived" in str(raised.value)
            with raises(AggregateArchived):
                await streams.archive("thing", "a")
            with raises(AggregateExists):
                await store.create("thing", "a")
            assert [info.aggregate_id for info in await store.aggregates("thing")] == ["b"]
            restored = await streams.restore("thing", "a")
            assert restored.events == 4
            assert _history(list(await _read_all(store, 0, limit=3))) == _history(list(before))
            assert (await streams.stream_status("thing", "a")).state == "live"
            assert not await streams.any_changed()
            await store.append("thing", "a", 4, make_events("a", 4, 1))
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3, 4, 5]

        self.run_check(check)

    def test_a_reader_past_an_archive_is_not_disturbed(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            everything = await _read_all(store, 0, limit=10)
            middle = everything[2].position  # a reader that has seen a1 b1 a2
            await streams.archive("thing", "a")
            ahead = await _read_all(store, middle, limit=10)
            assert [(e.aggregate_id, e.version) for e in ahead] == [("b", 2)]
            await streams.restore("thing", "a")
            ahead = await _read_all(store, middle, limit=10)
            assert _history(list(ahead)) == _history(list(everything[3:]))

        self.run_check(check)

    def test_delete_removes_events_and_records_the_deletion(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            head = await store.head_position()
            result = await streams.delete("thing", "a")
            assert result.events == 4
            assert result.position > head
            log = await _read_all(store, 0, limit=10)
            assert [(e.aggregate_id, e.version, e.name) for e in log] == [
                ("b", 1, "Happened"),
                ("b", 2, "Happened"),
                ("a", 0, DELETION_EVENT),
            ]
            record = decode_deletion(log[-1].data)
            assert (record.aggregate_id, record.version, record.events) == ("a", 4, 4)
            assert log[-1].position == result.position
            assert await store.read_aggregate("thing", "a") == []
            assert (await streams.stream_status("thing", "a")).state == "deleted"
            with raises(AggregateExists):
                await store.create("thing", "a")
            with raises(AggregateDeleted) as raised:
                await store.append("thing", "a", 4, make_events("a", 4, 1))
            assert "deleted" in str(raised.value)
            with raises(AggregateDeleted):
                await streams.restore("thing", "a")
            with raises(AggregateDeleted):
                await streams.delete("thing", "a")

        self.run_check(check)

    def test_delete_an_archived_stream(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            await streams.archive("thing", "a")
            result = await streams.delete("thing", "a")
            assert result.events == 4
            status = await streams.stream_status("thing", "a")
            assert (status.state, status.events, status.archived) == ("deleted", 0, 0)

        self.run_check(check)

    def test_positions_are_never_reused(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            head = await store.head_position()
            await streams.archive("thing", "a")  # the last event of the log goes
            (after_archive,) = await store.append("thing", "b", 2, make_events("b", 2, 1))
            assert after_archive > head
            deleted = await streams.delete("thing", "b")  # the last events again
            assert deleted.position > after_archive
            await store.create("thing", "c")
            (fresh,) = await store.append("thing", "c", 0, make_events("c", 0, 1))
            assert fresh > deleted.position
            await streams.restore("thing", "a")
            positions = [e.position for e in await _read_all(store, 0, limit=10)]
            assert positions == sorted(set(positions))

        self.run_check(check)

    def test_truncate_needs_a_snapshot(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            with raises(NoUsableSnapshot) as raised:
                await streams.truncate_before("thing", "a", 3)
            assert "version 3" in str(raised.value)
            await _snapshot(store, "a", 1)
            with raises(NoUsableSnapshot) as raised:
                await streams.truncate_before("thing", "a", 4)
            assert "snapshot is at version 1" in str(raised.value)
            assert len(await store.read_aggregate("thing", "a")) == 4

        self.run_check(check)

    def test_truncate_keeps_the_tail(self) -> None:
        async def check(store: EventStore) -> None:
            streams = _lifecycle(store)
            await _interleaved(store)
            await _snapshot(store, "a", 2)
            result = await streams.truncate_before("thing", "a", 3)
            assert result.events == 2
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [3, 4]
            assert [e.version for e in await store.read_aggregate("thing", "a", 3)] == [4]
            status = await streams.stream_status("thing", "a")
            assert (status.state, status.first_version, status.version) == ("live", 3, 4)
            versions = {i.aggregate_id: i.version for i in await store.aggregates("thing")}
            assert versions == {"a": 4, "b": 2}
            await store.append("thing", "a", 4, make_events("a", 4, 1))
            log = await _read_all(store, 0, limit=10)
            assert [(e.aggregate_id, e.version) for e in log if e.aggregate_id == "a"] == [
                ("a", 3),
                ("a", 4),
                ("a", 5),
            ]
            # Archived and restored, the truncation holds.
            await streams.archive("thing", "a")
            await streams.restore("thing", "a")
            assert (await streams.stream_status("thing", "a")).first_version == 3
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [3, 4, 5]

        self.run_check(check)
