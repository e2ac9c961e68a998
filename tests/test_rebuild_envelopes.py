"""A cold rebuild hands the event handler the same envelopes on every store: each stored row's
id, version, name, timestamp, position and metadata around its decoded data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsignal import AggregateConfig, Event, Signal
from eventsignal.domain.events import uuid_from_bytes
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore


class Add(msgspec.Struct, frozen=True):
    amount: int


class Added(msgspec.Struct, frozen=True):
    amount: int


class Total(msgspec.Struct, frozen=True):
    value: int = 0


def counter(seen: list[Event[Added]]) -> AggregateConfig[Total, Add]:
    def apply(total: Total, event: Event[Added]) -> Total:
        seen.append(event)
        return Total(total.value + event.data.amount)

    return AggregateConfig(
        name="counter",
        initial_state=Total(),
        command_handler=lambda command, total: [Added(command.amount)],
        event_handler=apply,
        events=[Added],
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], EventStore]:
    """A new store object on the same data at each call, as another process would open it."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "events.db", migrate=True)
    from eventsignal.stores.postgres import PostgresStore

    dsn = request.getfixturevalue("postgres_dsn")
    return lambda: PostgresStore(dsn, migrate=True, max_size=2)


async def test_rebuild_hands_each_row_as_stored(make_store: Callable[[], EventStore]) -> None:
    written: list[Event[Added]] = []
    async with Signal(counter(written), store=make_store()) as signal:
        await signal.create("c1")
        for amount in range(1, 8):
            # Some events carry metadata, most do not: both kinds of row are read back.
            metadata = {"by": f"user-{amount}"} if amount % 3 == 0 else None
            await signal.handle_command("c1", Add(amount), metadata=metadata)
        stored = await signal.store.read_aggregate("counter", "c1")

    rebuilt: list[Event[Added]] = []
    async with Signal(counter(rebuilt), store=make_store()) as cold:
        aggregate = await cold.aggregate("c1")

    assert aggregate.state == Total(sum(range(1, 8)))
    assert [type(event) for event in rebuilt] == [Event] * len(stored) == [Event] * 7
    assert [
        (e.id, e.aggregate_name, e.aggregate_id, e.version, e.name, e.timestamp, e.position)
        for e in rebuilt
    ] == [
        (r.id, r.aggregate_name, r.aggregate_id, r.version, r.name, r.timestamp, r.position)
        for r in stored
    ]
    assert [dict(e.metadata) for e in rebuilt] == [dict(r.metadata) for r in stored]
    assert [e.metadata.get("by") for e in rebuilt] == [
        f"user-{amount}" if amount % 3 == 0 else None for amount in range(1, 8)
    ]
    assert [e.data for e in rebuilt] == [Added(amount) for amount in range(1, 8)]
    assert all(e.position > 0 for e in rebuilt)
    # The ids the handler saw when the commands ran are the ones it sees on the rebuild.
    assert [e.id for e in rebuilt] == [e.id for e in written[-7:]]


@given(st.binary(min_size=16, max_size=16))
def test_uuid_from_bytes_equals_uuid(raw: bytes) -> None:
    fast, plain = uuid_from_bytes(raw), UUID(bytes=raw)
    assert (fast, hash(fast), str(fast), fast.is_safe) == (
        plain,
        hash(plain),
        str(plain),
        plain.is_safe,
    )


@given(st.binary(max_size=40).filter(lambda raw: len(raw) != 16))
def test_uuid_from_bytes_refuses_other_lengths(raw: bytes) -> None:
    with pytest.raises(ValueError, match="16-char"):
        UUID(bytes=raw)
    with pytest.raises(ValueError, match="16-char"):
        uuid_from_bytes(raw)
