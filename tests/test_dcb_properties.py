"""Whatever the interleaving of concurrent subscriptions, the course example keeps its rules.

Each command's read and append are delayed by a number of event-loop turns that Hypothesis
chooses, so commands read, decide and append in every order it can find. Afterwards the stored
events and the outcomes the callers saw must tell the same story, and every rule must hold.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence

from dcb_examples import courses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import CommandRejected
from eventsignal.dcb import (
    AppendCondition,
    DcbEvent,
    DcbStore,
    Query,
    QueryItem,
    SequencedEvent,
    view,
)
from eventsignal.stores import MemoryStore


class Delayed:
    """The real DCB view, each call made after ``turns()`` turns of the event loop."""

    def __init__(self, dcb: DcbStore, turns: Callable[[], int]) -> None:
        self.dcb = dcb
        self.turns = turns

    async def _wait(self) -> None:
        for _ in range(self.turns()):
            await asyncio.sleep(0)

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        await self._wait()
        return await self.dcb.read(query, after=after, limit=limit)

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int:
        await self._wait()
        return await self.dcb.append(events, condition)


COURSES = 6
STUDENTS = 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacities=st.lists(st.integers(1, 3), min_size=COURSES, max_size=COURSES),
    commands=st.lists(
        st.tuples(st.integers(0, STUDENTS - 1), st.integers(0, COURSES - 1)),
        min_size=1,
        max_size=20,
    ),
    data=st.data(),
)
def test_any_interleaving_keeps_every_rule(
    capacities: list[int], commands: list[tuple[int, int]], data: st.DataObject
) -> None:
    async def scenario() -> None:
        async with MemoryStore() as store:
            plain = courses.engine(view(store))
            for number, capacity in enumerate(capacities):
                await plain.handle(courses.DefineCourse(f"c{number}", capacity))
            turns = Delayed(view(store), lambda: data.draw(st.integers(0, 3)))
            engine = courses.engine(turns, max_attempts=1000)
            outcomes = await asyncio.gather(
                *(engine.handle(courses.Subscribe(f"s{s}", f"c{c}")) for s, c in commands),
                return_exceptions=True,
            )
            stored = await view(store).read(Query([QueryItem(types=["StudentSubscribed"])]))
        pairs = [
            (payload["student"], payload["course"])
            for payload in (json.loads(e.event.data) for e in stored)
        ]
        # Every rule holds in what was stored.
        assert len(pairs) == len(set(pairs))
        per_course = Counter(course for _, course in pairs)
        per_student = Counter(student for student, _ in pairs)
        for number, capacity in enumerate(capacities):
            assert per_course[f"c{number}"] <= capacity
        assert all(count <= courses.MAX_COURSES for count in per_student.values())
        # What the callers were told agrees with what was stored.
        told = {
            (f"s{s}", f"c{c}")
            for (s, c), outcome in zip(commands, outcomes, strict=True)
            if not isinstance(outcome, BaseException) and outcome.position is not None
        }
        assert told == set(pairs)
        for (s, c), outcome in zip(commands, outcomes, strict=True):
            student, course = f"s{s}", f"c{c}"
            if isinstance(outcome, CommandRejected):
                # Refused only when the course was full or the student at the limit, for good.
                assert (
                    per_course[course] >= capacities[c]
                    or per_student[student] >= courses.MAX_COURSES
                )
            else:
                assert not isinstance(outcome, BaseException), outcome
                assert (student, course) in pairs  # stored now, or before (no new event)

    asyncio.run(scenario())
