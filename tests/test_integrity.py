"""What a store acknowledges can always be read back, and one bad row never stops the world.

Events and metadata are checked before anything is stored; rows written by hand or by older
code are handed back flagged, park in subscriptions, name themselves in errors and can be found,
shown and quarantined from the command line.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import pydantic
import pytest
from click.testing import CliRunner

from eventsignal import (
    AggregateConfig,
    Event,
    EventSerializationError,
    InvalidHandlerResult,
    Signal,
)
from eventsignal.cart import AddToCart, CompletePurchase, Product, cart_config
from eventsignal.cli import main
from eventsignal.inspection import unreadable_events
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.subscriptions import (
    Subscription,
    SubscriptionRunner,
    SubscriptionStopped,
    Transaction,
    parked_events,
    quarantine,
    quarantined,
    wait_until_processed,
)

# Events whose values can disagree with their declared types


@dataclass(frozen=True)
class Reading:
    value: float
    maybe: float | None = None
    series: tuple[float, ...] = ()


@dataclass(frozen=True)
class Counted:
    count: int


class Measured(pydantic.BaseModel):
    value: float


@dataclass(frozen=True)
class Inner:
    weight: float


@dataclass(frozen=True)
class Basket:
    items: dict[str, list[Inner]]


@dataclass(frozen=True)
class Record:
    produced: Any  # what the command handler returns, as given


def _handle(command: Record, state: int) -> Any:
    return command.produced


def _apply(state: int, event: Event[Any]) -> int:
    return state + 1


meter = AggregateConfig(
    name="meter",
    initial_state=0,
    command_handler=_handle,
    event_handler=_apply,
    events=[Reading, Counted, Measured, Basket],
)


@pytest.fixture
async def signal() -> AsyncIterator[Signal[int, Any]]:
    async with Signal(meter, store=MemoryStore(), telemetry=None) as running:
        yield running


# Events are checked against their types before anything is stored


@pytest.mark.parametrize(
    ("event", "where"),
    [
        (Reading(math.nan), "$.value"),
        (Reading(1.0, maybe=math.inf), "$.maybe"),  # would read back as None
        (Reading(1.0, series=(2.0, -math.inf)), "$.series[1]"),
        (Measured(value=math.nan), "$.value"),
        (Basket({"a": [Inner(1.0), Inner(math.nan)]}), "$.items.a[1].weight"),
    ],
)
async def test_nan_and_infinity_are_refused(
    signal: Signal[int, Any], event: object, where: str
) -> None:
    await signal.create("m-1")
    await signal.handle_command("m-1", Record([Counted(1)]))
    with pytest.raises(EventSerializationError) as refused:
        await signal.handle_command("m-1", Record([event]))
    error = refused.value
    assert (error.aggregate_name, error.aggregate_id, error.version) == ("meter", "m-1", 2)
    assert error.event_name == type(event).__name__
    assert where in str(error)
    assert "NaN and infinity cannot be stored" in str(error)
    assert len(await signal.events("m-1")) == 1
    assert (await signal.aggregate("m-1")).version == 1


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (Counted("seven"), "$.count"),  # type: ignore[arg-type]
        (Counted(1.5), "$.count"),  # type: ignore[arg-type]
        (Reading("high"), "$.value"),  # type: ignore[arg-type]
    ],
)
async def test_values_that_do_not_match_their_types_are_refused(
    signal: Signal[int, Any], event: object, field: str
) -> None:
    await signal.create("m-1")
    with pytest.raises(EventSerializationError) as refused:
        await signal.handle_command("m-1", Record([Counted(1), event]))
    assert refused.value.version == 2
    assert field in str(refused.value)
    assert await signal.events("m-1") == []  # the whole command stored nothing


async def test_a_refused_event_leaves_a_store_that_restarts(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with Signal(meter, store=SQLiteStore(path, migrate=True), telemetry=None) as signal:
        await signal.create("m-1")
        await signal.handle_command("m-1", Record([Reading(0.5)]))
        with pytest.raises(EventSerializationError):
            await signal.handle_command("m-1", Record([Reading(math.inf)]))
        with pytest.raises(EventSerializationError):
            await signal.handle_command("m-1", Record([Reading(1.0)]), metadata={"k": 5})  # type: ignore[dict-item]
    async with Signal(meter, store=SQLiteStore(path), telemetry=None) as again:
        assert (await again.aggregate("m-1")).version == 1
        [stored] = await again.events("m-1")
        assert stored.data == Reading(0.5)


async def test_bad_metadata_is_refused_naming_the_key(signal: Signal[int, Any]) -> None:
    await signal.create("m-1")
    with pytest.raises(EventSerializationError) as refused:
        await signal.handle_command("m-1", Record([Counted(1)]), metadata={"k": 5})  # type: ignore[dict-item]
    assert "metadata 'k'" in str(refused.value)
    assert refused.value.event_name == "Counted"
    assert await signal.events("m-1") == []


async def test_the_callers_metadata_is_copied(signal: Signal[int, Any]) -> None:
    metadata = {"who": "ann"}
    await signal.create("m-1")
    await signal.handle_command("m-1", Record([Counted(1)]), metadata=metadata)
    metadata["who"] = "bob"
    [stored] = await signal.events("m-1")
    assert stored.metadata == {"who": "ann"}


@pytest.mark.parametrize(
    "produced", [None, Counted(1), "Counted", {"count": 1}, {Counted(1)}], ids=repr
)
async def test_a_handler_must_return_a_list_of_events(
    signal: Signal[int, Any], produced: object
) -> None:
    await signal.create("m-1")
    with pytest.raises(InvalidHandlerResult) as wrong:
        await signal.handle_command("m-1", Record(produced))
    assert isinstance(wrong.value, TypeError)
    assert "must return a list of events" in str(wrong.value)
    assert type(produced).__name__ in str(wrong.value)
    assert "'m-1'" in str(wrong.value)
    with pytest.raises(InvalidHandlerResult):
        await signal.create("m-2", Record(produced))
    assert not await signal.store.exists("meter", "m-2")


async def test_tuples_and_generators_of_events_are_fine(signal: Signal[int, Any]) -> None:
    await signal.create("m-1")
    await signal.handle_command("m-1", Record((Counted(1), Counted(2))))
    await signal.handle_command("m-1", Record(Counted(n) for n in (3, 4)))
    assert [e.data.count for e in await signal.events("m-1")] == [1, 2, 3, 4]


# Rows written by hand or by older code


Corrupt = Callable[[int, str], Awaitable[None]]


@dataclass
class Backend:
    make: Callable[[], Awaitable[EventStore]]
    corrupt: Corrupt  # rewrites the metadata of the row at a position, as old code could
    url: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "events.db"

        async def make_sqlite() -> EventStore:
            return SQLiteStore(path, migrate=True)

        async def corrupt_sqlite(position: int, metadata: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(
                    "UPDATE eventsignal_events SET metadata = ? WHERE position = ?",
                    (metadata, position),
                )

        return Backend(make_sqlite, corrupt_sqlite, str(path))
    import psycopg

    factory = request.getfixturevalue("postgres_store_factory")
    dsn: str = request.getfixturevalue("postgres_dsn")

    async def make_postgres() -> EventStore:
        store: EventStore = await factory()
        return store

    async def corrupt_postgres(position: int, metadata: str) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                "UPDATE eventsignal_events SET metadata = %s::jsonb WHERE position = %s",
                (metadata, position),
            )

    return Backend(make_postgres, corrupt_postgres, dsn)  # the CLI takes keyword DSNs


async def three_carts(store: EventStore) -> list[int]:
    """Three paid carts; returns the positions of cart-1's events."""
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        for cart in ("cart-0", "cart-1", "cart-2"):
            await signal.create(cart)
            await signal.handle_command(cart, AddToCart(Product("tea", 1, 300)))
            await signal.handle_command(cart, CompletePurchase())
    await store.open()
    try:
        return [e.position for e in await store.read_all(0) if e.aggregate_id == "cart-1"]
    finally:
        await store.close()


@pytest.fixture
async def damaged(backend: Backend) -> AsyncIterator[tuple[EventStore, int]]:
    """A store of three carts where cart-1's first event has metadata no reader accepts."""
    store = await backend.make()
    bad = (await three_carts(store))[0]
    await backend.corrupt(bad, '{"k": 5}')
    await store.open()
    yield store, bad
    while getattr(store, "is_open", False):
        await store.close()


async def test_a_bad_row_is_handed_back_flagged(damaged: tuple[EventStore, int]) -> None:
    store, bad = damaged
    every = await store.read_all(0)
    assert [e.position for e in every] == list(range(1, len(every) + 1))
    [flagged] = [e for e in every if e.defect is not None]
    assert flagged.position == bad
    assert "metadata" in flagged.defect  # type: ignore[operator]
    assert [e.position async for e in unreadable_events(store)] == [bad]


async def test_an_aggregate_holding_a_bad_row_names_it(damaged: tuple[EventStore, int]) -> None:
    store, bad = damaged
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        with pytest.raises(EventSerializationError) as unreadable:
            await signal.aggregate("cart-1")
        error = unreadable.value
        assert (error.aggregate_id, error.version, error.position) == ("cart-1", 1, bad)
        assert f"'cart-1' version 1 event {error.event_name!r} at position {bad}" in str(error)
        assert "metadata" in str(error)
        assert (await signal.aggregate("cart-2")).version == 2  # the others load


def _handlers(seen: list[int]) -> Iterator[Any]:
    def plain(event: Event[Any]) -> None:
        seen.append(event.position)

    async def transactional(event: Event[Any], tx: Transaction) -> None:
        seen.append(event.position)

    yield plain
    yield transactional


@pytest.mark.parametrize("kind", ["plain", "transactional"])
async def test_a_subscription_parks_a_bad_row_at_once_and_goes_on(
    damaged: tuple[EventStore, int], kind: str
) -> None:
    store, bad = damaged
    seen: list[int] = []
    plain, transactional = _handlers(seen)
    subscription = Subscription(
        name="revenue",
        handler=plain if kind == "plain" else transactional,
        configs=[cart_config],
        max_attempts=5,
        retry_delay=30,  # a retry of the bad row would outlast the test
    )
    head = await store.head_position()
    async with SubscriptionRunner(subscription, store):
        await wait_until_processed(store, "revenue", head, timeout=10)
    [parked] = await parked_events(store, "revenue")
    assert parked.position == bad
    assert parked.attempts == 1
    assert "EventSerializationError" in parked.error
    assert "metadata" in parked.error
    # A transactional batch that met the bad row rolled back and went one by one: the handler
    # saw the rows before it twice, but their writes counted once.
    assert sorted(set(seen)) == [p for p in range(1, head + 1) if p != bad]


async def test_a_stopping_subscription_stops_then_passes_a_quarantined_row(
    damaged: tuple[EventStore, int],
) -> None:
    store, bad = damaged
    seen: list[int] = []
    subscription = Subscription(
        name="strict",
        handler=lambda event: seen.append(event.position),
        configs=[cart_config],
        on_failure="stop",
    )
    runner = SubscriptionRunner(subscription, store)
    await runner.start()
    with pytest.raises(SubscriptionStopped) as stopped:
        await runner.wait()
    await runner.stop()
    assert stopped.value.position == bad
    assert seen == list(range(1, bad))

    await quarantine(store, bad, "metadata written by a script, see the ticket")
    assert await quarantined(store) == {bad: "metadata written by a script, see the ticket"}
    head = await store.head_position()
    async with SubscriptionRunner(subscription, store) as again:
        await wait_until_processed(store, "strict", head, timeout=10)
        assert await again.parked() == []
    assert seen == [p for p in range(1, head + 1) if p != bad]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_command_line_finds_shows_and_quarantines_bad_rows(backend: Backend) -> None:
    async def damage() -> int:
        bad = (await three_carts(await backend.make()))[0]
        await backend.corrupt(bad, '{"k": 5}')
        return bad

    bad = asyncio.run(damage())  # the command line runs its own event loop
    code, out = cli("check", backend.url)
    assert code == 1
    [header, row] = out.strip().splitlines()
    assert header.split()[:3] == ["POSITION", "TYPE", "ID"]
    assert row.split()[:3] == [str(bad), "cart", "cart-1"]
    assert "metadata" in row

    code, out = cli("event", backend.url, str(bad))
    assert code == 0
    shown = msgspec.json.decode(out)
    assert shown["position"] == bad
    assert "metadata" in shown["defect"]

    code, out = cli("quarantine", backend.url, str(bad), "--reason", "hand-written metadata")
    assert (code, out.strip()) == (0, f"quarantined the event at position {bad}")
    code, out = cli("quarantine", backend.url)
    assert out.strip().splitlines()[1].split(maxsplit=1) == [str(bad), "hand-written metadata"]
    code, out = cli("quarantine", backend.url, str(bad), "--release")
    assert (code, out.strip()) == (0, f"released the event at position {bad}")
    code, out = cli("quarantine", backend.url, "999999", "--reason", "x")
    assert code == 1
    assert "no event is stored at position 999999" in out


def test_check_decodes_the_data_of_imported_aggregate_types(backend: Backend) -> None:
    async def fill() -> None:
        await three_carts(await backend.make())

    asyncio.run(fill())
    code, out = cli("check", backend.url, "--import", "eventsignal.cart")
    assert (code, out.strip().endswith("(data of cart included)")) == (0, True)


async def test_a_message_published_by_hand_on_nats_is_handed_back_flagged(nats_url: str) -> None:
    import nats

    from eventsignal.stores import NatsStore
    from eventsignal.stores.nats.wire import (
        COUNT,
        CREATED,
        EXPECTED_LAST_SUBJECT_SEQUENCE,
        VERSION,
        subject_of,
    )
    from eventsignal.testing import make_events

    server = nats_url
    store = NatsStore(server, stream=f"test_{uuid4().hex}")
    await store.open()
    nc = await nats.connect(server)
    try:
        await store.create("thing", "a", make_events("a", 0, 1))
        await nc.jetstream().publish(
            subject_of(store.stream, "thing", "b"),
            b"not msgpack at all",
            headers={  # the envelope as the store writes it, around a body it cannot read
                COUNT: "1",
                VERSION: "1",
                CREATED: "2026-01-01T00:00:00+00:00",
                EXPECTED_LAST_SUBJECT_SEQUENCE: "0",
            },
        )
        await store.append("thing", "a", 1, make_events("a", 1, 1))
        every = await store.read_all(0)
        assert [(e.aggregate_id, e.version, e.defect is None) for e in every] == [
            ("a", 1, True),
            ("b", 1, False),
            ("a", 2, True),
        ]
        assert "cannot be read" in str(every[1].defect)
        [flagged] = await store.read_aggregate("thing", "b")
        assert flagged.defect is not None
    finally:
        await nc.jetstream().delete_stream(store.stream)
        await nc.close()
        await store.close()


async def test_subscription_tables_of_the_previous_release_gain_the_quarantine(
    backend: Backend,
) -> None:
    from eventsignal.stores.sql.subscriptions import MIGRATIONS

    store = await backend.make()
    await three_carts(store)
    await store.open()
    try:
        sql: Any = store
        # The subscription tables as the previous release left them: its one migration, a
        # subscription that ran, an event it parked.
        await sql.migrate_component("subscriptions", MIGRATIONS[sql.dialect][:1])
        seen: list[int] = []

        def fails_on_three(event: Event[Any]) -> None:
            if event.position == 3:
                raise ValueError("no")
            seen.append(event.position)

        old = Subscription(name="old", handler=fails_on_three, configs=[cart_config])
        with pytest.raises(Exception, match="eventsignal_quarantine"):
            async with sql.transaction() as tx:
                await tx.fetchall("SELECT * FROM eventsignal_quarantine")

        await quarantine(store, 2, "set aside before the upgrade finished")
        async with SubscriptionRunner(old, store):
            await wait_until_processed(store, "old", await store.head_position(), timeout=10)
        assert 2 not in seen
        [parked] = await parked_events(store, "old")
        assert parked.position == 3
        async with sql.transaction() as tx:
            [(version,)] = await tx.fetchall(
                "SELECT version FROM eventsignal_schema WHERE component = 'subscriptions'"
            )
        assert version == len(MIGRATIONS[sql.dialect]) == 2
    finally:
        await store.close()
