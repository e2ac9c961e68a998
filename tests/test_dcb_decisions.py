"""Decisions on dynamic consistency boundaries: the course and username examples, the pitfalls
other DCB implementations met, and concurrent writers on every embedded store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from uuid import uuid4

import pytest
from dcb_examples import courses, usernames

from eventsignal import CommandRejected, ConfigurationError
from eventsignal.dcb import (
    AppendCondition,
    AppendConditionFailed,
    DcbEvent,
    DcbStore,
    Query,
    QueryItem,
    SequencedEvent,
    view,
)
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.testing.expect import raises

Subscribe, DefineCourse = courses.Subscribe, courses.DefineCourse


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    made: EventStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "e.db", migrate=True)
    elif request.param == "postgres":
        from eventsignal.stores import PostgresStore

        made = PostgresStore(request.getfixturevalue("postgres_dsn"), migrate=True, max_size=4)
    else:
        from eventsignal.stores import NatsStore

        made = NatsStore(request.getfixturevalue("nats_url"), stream=f"dcb_{uuid4().hex}")
    await made.open()
    try:
        yield made
    finally:
        await made.close()


async def subscribed(dcb: DcbStore, course: str) -> list[SequencedEvent]:
    query = Query([QueryItem(types=["StudentSubscribed"], tags=[f"course:{course}"])])
    return list(await dcb.read(query))


# The course example


async def test_a_course_takes_its_capacity_and_no_more(store: EventStore) -> None:
    engine = courses.engine(view(store))
    await engine.handle(DefineCourse("c1", 2))
    await engine.handle(Subscribe("s1", "c1"))
    await engine.handle(Subscribe("s2", "c1"))
    with raises(CommandRejected) as full:
        await engine.handle(Subscribe("s3", "c1"))
    assert "full" in str(full.value)
    assert len(await subscribed(view(store), "c1")) == 2


async def test_a_student_takes_at_most_five_courses(store: EventStore) -> None:
    engine = courses.engine(view(store))
    for n in range(6):
        await engine.handle(DefineCourse(f"c{n}", 10))
    for n in range(5):
        await engine.handle(Subscribe("s1", f"c{n}"))
    with raises(CommandRejected):
        await engine.handle(Subscribe("s1", "c5"))
    await engine.handle(Subscribe("s2", "c5"))  # another student is not limited by s1


async def test_unknown_course_and_defining_twice_are_rejected(store: EventStore) -> None:
    engine = courses.engine(view(store))
    with raises(CommandRejected):
        await engine.handle(Subscribe("s1", "nowhere"))
    defined = await engine.handle(DefineCourse("c1", 3))
    with raises(CommandRejected):
        await engine.handle(DefineCourse("c1", 4))
    assert await store.head_position() == defined.position  # nothing stored since


# The username example


async def test_a_username_is_unique_and_freed_by_a_rename(store: EventStore) -> None:
    engine = usernames.engine(view(store))
    await engine.handle(usernames.Register("u1", "ada"))
    with raises(CommandRejected):
        await engine.handle(usernames.Register("u2", "ada"))
    with raises(CommandRejected):
        await engine.handle(usernames.Register("u1", "other"))  # u1 is registered already
    await engine.handle(usernames.ChangeUsername("u1", "countess"))
    await engine.handle(usernames.Register("u2", "ada"))
    with raises(CommandRejected):
        await engine.handle(usernames.ChangeUsername("u2", "countess"))


async def test_racing_registrations_of_one_name_let_one_win(store: EventStore) -> None:
    engine = usernames.engine(view(store))
    outcomes = await asyncio.gather(
        *(engine.handle(usernames.Register(f"u{n}", "ada")) for n in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, CommandRejected) for o in outcomes if isinstance(o, BaseException))


# Pitfalls met by other DCB implementations


class ReadThenInterfere:
    """A DCB view that lets another writer append right after this one's first read (the real
    store underneath): the read and the condition must come from one state of the store."""

    def __init__(self, dcb: DcbStore, interference: DcbEvent) -> None:
        self.dcb = dcb
        self.interference: DcbEvent | None = interference

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        read = await self.dcb.read(query, after=after, limit=limit)
        if self.interference is not None:
            event, self.interference = self.interference, None
            await self.dcb.append(event)
        return read

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int:
        return await self.dcb.append(events, condition)


async def test_a_write_between_read_and_append_is_a_conflict_and_is_decided_again(
    store: EventStore,
) -> None:
    engine = courses.engine(view(store))
    await engine.handle(DefineCourse("c1", 1))
    rival = DcbEvent(
        "StudentSubscribed", b'{"student":"rival","course":"c1"}', ["course:c1", "student:rival"]
    )
    racing = courses.engine(ReadThenInterfere(view(store), rival))
    with raises(CommandRejected):  # second attempt sees the course full
        await racing.handle(Subscribe("s1", "c1"))
    assert [e.event.tags for e in await subscribed(view(store), "c1")] == [
        ("course:c1", "student:rival")
    ]


async def test_an_unrelated_write_between_read_and_append_is_no_conflict(
    store: EventStore,
) -> None:
    engine = courses.engine(view(store))
    await engine.handle(DefineCourse("c1", 1))
    other = DcbEvent("StudentSubscribed", b'{"student":"x","course":"c2"}', ["course:c2"])
    outcome = await courses.engine(ReadThenInterfere(view(store), other)).handle(
        Subscribe("s1", "c1")
    )
    assert outcome.attempts == 1


async def test_a_decision_without_events_stores_nothing_and_fails_nobody(
    store: EventStore,
) -> None:
    dcb = view(store)
    engine = courses.engine(dcb)
    await engine.handle(DefineCourse("c1", 5))
    await engine.handle(Subscribe("s1", "c1"))
    query = courses.course_of(Subscribe("s2", "c1"))
    (*_, last) = await dcb.read(query)
    head = await store.head_position()
    again = await engine.handle(Subscribe("s1", "c1"))  # subscribed already: no events
    assert again.position is None
    assert await store.head_position() == head
    # A writer holding the boundary as read before is not failed by the empty decision.
    await dcb.append(
        DcbEvent("StudentSubscribed", b'{"student":"s2","course":"c1"}', ["course:c1"]),
        AppendCondition(query, after=last.position),
    )


async def test_the_same_boundary_read_by_several_projections_is_no_conflict(
    store: EventStore,
) -> None:
    engine = courses.engine(view(store))
    await engine.handle(DefineCourse("c1", 5))
    await engine.handle(Subscribe("s1", "c1"))
    # The three projections of Subscribe overlap (the course, the student, this pair).
    outcome = await engine.handle(Subscribe("s2", "c1"))
    assert outcome.attempts == 1
    first = await view(store).read(courses.course_of(Subscribe("s2", "c1")))
    second = await view(store).read(courses.course_of(Subscribe("s2", "c1")))
    assert first == second


async def test_bounded_retries_end_with_the_conflict(store: EventStore) -> None:
    class AlwaysInterfere(ReadThenInterfere):
        async def read(
            self, query: Query, *, after: int | None = None, limit: int | None = None
        ) -> Sequence[SequencedEvent]:
            read = await self.dcb.read(query, after=after, limit=limit)
            noise = b'{"student":"noise","course":"c1"}'
            await self.dcb.append(DcbEvent("StudentSubscribed", noise, ["course:c1"]))
            return read

    await courses.engine(view(store)).handle(DefineCourse("c1", 100))
    noisy = AlwaysInterfere(view(store), DcbEvent("Noise", b"{}"))
    engine = courses.DecisionEngine(noisy, courses.DECISIONS, [*courses.EVENTS], max_attempts=3)
    with raises(AppendConditionFailed):
        await engine.handle(Subscribe("s1", "c1"))
    students = [e.event.data for e in await subscribed(view(store), "c1")]
    assert students == [b'{"student":"noise","course":"c1"}'] * 3


async def test_a_decision_needs_a_known_command(store: EventStore) -> None:
    with raises(ConfigurationError):
        await courses.engine(view(store)).handle(object())


# Concurrency on one boundary and on disjoint ones


async def test_writers_racing_for_the_last_seats_exactly_fill_the_course(
    store: EventStore,
) -> None:
    engine = courses.engine(view(store), max_attempts=1000)
    await engine.handle(DefineCourse("hot", 30))
    outcomes = await asyncio.gather(
        *(engine.handle(Subscribe(f"s{n}", "hot")) for n in range(45)), return_exceptions=True
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    rejected = [o for o in outcomes if isinstance(o, CommandRejected)]
    assert len(won) == 30
    assert len(rejected) == 15
    assert len(await subscribed(view(store), "hot")) == 30


async def test_writers_on_disjoint_courses_never_fail_each_other(store: EventStore) -> None:
    engine = courses.engine(view(store), max_attempts=1)
    for n in range(20):
        await engine.handle(DefineCourse(f"c{n}", 1))
    outcomes = await asyncio.gather(
        *(engine.handle(Subscribe(f"s{n}", f"c{n}")) for n in range(20))
    )
    assert all(o.attempts == 1 for o in outcomes)


@pytest.mark.parametrize("example", ["dcb_courses.py", "dcb_usernames.py"])
def test_the_examples_run_as_written(example: str) -> None:
    finished = subprocess.run(
        [sys.executable, str(Path(__file__).parent.parent / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip()


class Counting(ReadThenInterfere):
    """The real view, remembering the ``after`` of every read."""

    def __init__(self, dcb: DcbStore) -> None:
        super().__init__(dcb, DcbEvent("Unused", b"{}"))
        self.interference = None
        self.afters: list[int | None] = []

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        self.afters.append(after)
        return await self.dcb.read(query, after=after, limit=limit)


async def test_a_known_boundary_is_caught_up_not_read_again(store: EventStore) -> None:
    counting = Counting(view(store))
    engine = courses.engine(counting)
    await engine.handle(DefineCourse("c1", 2))
    await engine.handle(Subscribe("s1", "c1"))
    read_whole = counting.afters[-1]
    await courses.engine(view(store)).handle(Subscribe("s2", "c1"))  # another engine's write
    again = await engine.handle(Subscribe("s1", "c1"))  # the same boundary as before
    assert read_whole is None
    assert counting.afters[-1] is not None  # only what came after the cached position
    assert again.position is None  # caught up: s1 is subscribed already
    head = await store.head_position()
    with raises(CommandRejected):  # and the course is full, as s2's event says
        await engine.handle(Subscribe("s3", "c1"))
    uncached = courses.DecisionEngine(view(store), courses.DECISIONS, courses.EVENTS, cache_size=0)
    assert (await uncached.handle(Subscribe("s1", "c1"))).position is None
    assert await store.head_position() == head
