"""Course subscriptions, decided across courses and students with dynamic consistency boundaries.

Two rules span more than one thing: a course takes at most its capacity of students, and a
student takes at most ``MAX_COURSES`` courses. Neither needs an aggregate of its own: each
subscription reads the course's and the student's events, and is stored only if neither changed
meanwhile. Run it with ``python examples/dcb_courses.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventsignal import CommandRejected
from eventsignal.dcb import (
    DcbStore,
    Decision,
    DecisionEngine,
    Projection,
    Query,
    QueryItem,
    Tagged,
    view,
)
from eventsignal.stores import MemoryStore

MAX_COURSES = 5


@dataclass(frozen=True)
class CourseDefined:
    course: str
    capacity: int


@dataclass(frozen=True)
class StudentSubscribed:
    student: str
    course: str


@dataclass(frozen=True)
class DefineCourse:
    course: str
    capacity: int


@dataclass(frozen=True)
class Subscribe:
    student: str
    course: str


@dataclass(frozen=True)
class Course:
    defined: bool = False
    capacity: int = 0
    students: int = 0


def course_tag(course: str) -> str:
    return f"course:{course}"


def student_tag(student: str) -> str:
    return f"student:{student}"


def evolve_course(state: Course, event: object) -> Course:
    if isinstance(event, CourseDefined):
        return Course(True, event.capacity, state.students)
    return Course(state.defined, state.capacity, state.students + 1)


def course_of(command: Subscribe | DefineCourse) -> Query:
    return Query(
        [QueryItem(types=["CourseDefined", "StudentSubscribed"], tags=[course_tag(command.course)])]
    )


def courses_of_student(command: Subscribe) -> Query:
    return Query([QueryItem(types=["StudentSubscribed"], tags=[student_tag(command.student)])])


def this_subscription(command: Subscribe) -> Query:
    # Overlaps both queries above: the union reads each event once, and conflicts only with a
    # writer that really changed one of them.
    tags = [course_tag(command.course), student_tag(command.student)]
    return Query([QueryItem(types=["StudentSubscribed"], tags=tags)])


def define(command: DefineCourse, states: Mapping[str, Any]) -> list[Tagged]:
    course = states["course"]
    assert isinstance(course, Course)
    if course.defined:
        raise CommandRejected(f"course {command.course!r} already exists")
    if command.capacity < 1:
        raise CommandRejected("a course takes at least one student")
    event = CourseDefined(command.course, command.capacity)
    return [Tagged(event, [course_tag(command.course)])]


def subscribe(command: Subscribe, states: Mapping[str, Any]) -> list[Tagged]:
    course, taken, already = states["course"], states["student"], states["already"]
    assert isinstance(course, Course)
    if not course.defined:
        raise CommandRejected(f"no course {command.course!r}")
    if already:
        return []  # subscribed already: nothing changes, nothing is stored
    if course.students >= course.capacity:
        raise CommandRejected(f"course {command.course!r} is full")
    if isinstance(taken, int) and taken >= MAX_COURSES:
        raise CommandRejected(f"student {command.student!r} takes {MAX_COURSES} courses already")
    event = StudentSubscribed(command.student, command.course)
    return [Tagged(event, [course_tag(command.course), student_tag(command.student)])]


def count(state: int, event: object) -> int:
    return state + 1


DECISIONS: list[Decision[Any]] = [
    Decision(
        DefineCourse,
        {"course": Projection(Course(), evolve_course, course_of)},
        define,
    ),
    Decision(
        Subscribe,
        {
            "course": Projection(Course(), evolve_course, course_of),
            "student": Projection(0, count, courses_of_student),
            "already": Projection(False, lambda state, event: True, this_subscription),
        },
        subscribe,
    ),
]
EVENTS = [CourseDefined, StudentSubscribed]


def engine(dcb: DcbStore, max_attempts: int = 10) -> DecisionEngine:
    """The course decisions on one store's DCB view."""
    return DecisionEngine(dcb, DECISIONS, EVENTS, max_attempts=max_attempts)


async def main() -> None:
    async with MemoryStore() as store:
        courses = engine(view(store))
        await courses.handle(DefineCourse("algebra", capacity=2))
        for student in ("ada", "grace", "alan"):
            try:
                await courses.handle(Subscribe(student, "algebra"))
                print(f"{student} subscribed")
            except CommandRejected as rejected:
                print(f"{student}: {rejected}")


if __name__ == "__main__":
    asyncio.run(main())
