"""Several OS processes race for the last seats of one course through the DCB view of one shared
store, while each also fills a course of its own.

Exactly the course's capacity of subscriptions must be stored, however the processes interleave
(no two writers both commit on one boundary), and no command on a process's own course may ever
lose its condition to another process (disjoint boundaries never fail each other).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from dcb_examples import courses
from racing_writers import race

from eventsignal.dcb import Query, QueryItem, view
from eventsignal.stores import EventStore

WORKERS = 4
STUDENTS = 15  # each, for 30 seats: half of them find the course full
OWN = 10
CAPACITY = 30
WRITER = Path(__file__).with_name("dcb_writer.py")


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
    store: EventStore
    if kind == "sqlite":
        from eventsignal.stores import SQLiteStore

        target = str(tmp_path / "shared.db")
        store = SQLiteStore(target, migrate=True)
    elif kind == "postgres":
        from eventsignal.stores import PostgresStore

        target = request.getfixturevalue("postgres_dsn")
        store = PostgresStore(target, migrate=True, max_size=2)
    else:
        from eventsignal.stores import NatsStore

        server = request.getfixturevalue("nats_url")
        stream = f"dcb_race_{uuid4().hex}"
        target = f"{server}?stream={stream}"
        store = NatsStore(server, stream=stream)
    await store.open()
    try:
        yield kind, target, store
    finally:
        await store.close()


async def run_writers(kind: str, target: str, hot: str) -> list[dict[str, Any]]:
    return await race(
        WRITER,
        [
            [
                *("--store", kind, "--target", target, "--worker", str(worker), "--hot", hot),
                *("--students", str(STUDENTS), "--own", str(OWN)),
            ]
            for worker in range(WORKERS)
        ],
    )


async def test_processes_racing_for_the_last_seats_fill_the_course_exactly(
    shared_store: tuple[str, str, EventStore],
) -> None:
    kind, target, store = shared_store
    hot = f"hot-{uuid4().hex[:8]}"
    await courses.engine(view(store)).handle(courses.DefineCourse(hot, CAPACITY))
    reports = await run_writers(kind, target, hot)

    assert [r["errors"] for r in reports] == [[]] * WORKERS
    won = [student for r in reports for student, _ in r["hot"]]
    full = [student for r in reports for student in r["full"]]
    assert len(won) == CAPACITY
    assert len(full) == WORKERS * STUDENTS - CAPACITY
    stored = await view(store).read(
        Query([QueryItem(types=["StudentSubscribed"], tags=[f"course:{hot}"])])
    )
    assert sorted(json.loads(e.event.data)["student"] for e in stored) == sorted(won)
    # The race was real: some commands were decided again after losing their condition.
    assert max(attempts for r in reports for _, attempts in r["hot"]) > 1
    # Disjoint boundaries: every command on a process's own course went through at once.
    assert [len(r["own"]) for r in reports] == [OWN] * WORKERS
    assert {attempts for r in reports for _, attempts in r["own"]} == {1}
