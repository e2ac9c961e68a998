"""Four OS processes, each with its own Signal, send commands to the same 100 aggregates at once.

Each process keeps live copies that go stale whenever another process appends; the store refuses
its next append, the engine catches up and retries. Afterwards the store must hold exactly the
acknowledged commands' events, with no gap or duplicate in any aggregate's versions, and every
live copy in every process must equal the state rebuilt from the store at that copy's version.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from many_writer import Tally, config
from racing_writers import race

from eventsignal import Signal
from eventsignal.stores import EventStore

WORKERS = 4
COMMANDS = 250
AGGREGATES = 100
WRITER = Path(__file__).with_name("many_writer.py")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str, EventStore]]:
    """(store kind, target the writers open, a store on the same data for checking)."""
    kind: str = request.param
    if kind == "sqlite":
        from eventsignal.stores import SQLiteStore

        target = str(tmp_path / "shared.db")
        sqlite = SQLiteStore(target, migrate=True)
        await sqlite.open()
        yield kind, target, sqlite
        await sqlite.close()
    elif kind == "postgres":
        from eventsignal.stores import PostgresStore

        target = request.getfixturevalue("postgres_dsn")
        postgres = PostgresStore(target, migrate=True, max_size=2)
        await postgres.open()
        yield kind, target, postgres
        await postgres.close()
    else:
        import nats

        from eventsignal.stores import NatsStore

        server = request.getfixturevalue("nats_url")
        stream = f"test_many_{uuid4().hex}"
        target = f"{server}?stream={stream}"
        jetstream = NatsStore(server, stream=stream)
        await jetstream.open()
        yield kind, target, jetstream
        await jetstream.close()
        nc = await nats.connect(server)
        await nc.jetstream().delete_stream(stream)
        await nc.close()


async def run_writers(kind: str, target: str) -> list[dict[str, Any]]:
    """Start the writers, release them together once all are ready, collect their reports."""
    return await race(
        WRITER,
        [
            [
                *("--store", kind, "--target", target, "--worker", str(worker)),
                *("--commands", str(COMMANDS), "--shared", str(AGGREGATES)),
            ]
            for worker in range(WORKERS)
        ],
    )


async def test_processes_sharing_aggregates_agree_with_the_store(
    shared_store: tuple[str, str, EventStore],
) -> None:
    kind, target, store = shared_store
    reports = await run_writers(kind, target)

    assert [r["failed"] for r in reports] == [[]] * WORKERS
    acked_events: Counter[str] = Counter()
    expected: dict[str, set[tuple[int, int, int]]] = {}
    for report in reports:
        for aggregate_id, number, events in report["acked"]:
            acked_events[aggregate_id] += events
            expected.setdefault(aggregate_id, set()).update(
                (report["worker"], number, part) for part in range(events)
            )
    assert sum(len(r["acked"]) for r in reports) == WORKERS * COMMANDS
    # Stale copies were really exercised: processes got in each other's way and caught up.
    assert sum(r["conflicts"] for r in reports) > 0

    async with Signal(config(), store=store, telemetry=None) as checker:
        for n in range(AGGREGATES):
            aggregate_id = f"shared-{n}"
            events = await checker.events(aggregate_id)
            assert [e.version for e in events] == list(range(1, len(events) + 1))
            assert len(events) == acked_events[aggregate_id]
            stored = {(e.data.worker, e.data.number, e.data.part) for e in events}
            assert stored == expected.get(aggregate_id, set())
        for report in reports:
            for aggregate_id, (version, count, total, trail) in report["live"].items():
                rebuilt = await checker.state_at(aggregate_id, version=version)
                assert rebuilt.state == Tally(count, total, trail), (report["worker"], aggregate_id)

    stored_total = 0
    position = 0
    while page := await store.read_all(position, 500):
        stored_total += len(page)
        position = page[-1].position
    assert stored_total == sum(acked_events.values())
    if kind == "nats":
        # One message per event (each two-event command an atomic batch), and one creation
        # marker per aggregate: the stream's last sequence counts them all.
        from eventsignal.stores.nats.wire import SLOTS

        assert await store.head_position() // SLOTS == stored_total + AGGREGATES
