"""Any query reads, and any condition checks, exactly what the model says, on every store.

Hypothesis makes a log (DCB events with several tags, and aggregate events, which carry their
aggregate's tag) and queries of any shape (several items; types, tags, both; the aggregate's tag;
every event), then compares each store's answer with the query applied in memory, event by
event. Each example works in a namespace of its own, so one store serves them all.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal.dcb import (
    AppendCondition,
    AppendConditionFailed,
    DcbEvent,
    Query,
    QueryItem,
    aggregate_tag,
)
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.testing import make_events

TYPES = ["A", "B", "Happened"]  # aggregate events are of type "Happened"
TAGS = ["x", "y", "z", "@aggregate"]  # the last one stands for the aggregate's implicit tag


def tag(name: str, ns: str) -> str:
    """A tag of the namespace ``ns``; ``@aggregate`` is the tag its aggregate carries."""
    return aggregate_tag(f"{ns}-thing", ns) if name == "@aggregate" else f"{ns}-{name}"


# A log entry: ("dcb", type, tags) or ("aggregate", count).
entries = st.lists(
    st.one_of(
        st.tuples(
            st.just("dcb"),
            st.sampled_from(TYPES[:2]),
            st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
        ),
        st.tuples(st.just("aggregate"), st.integers(1, 2)),
    ),
    min_size=1,
    max_size=10,
)
items = st.builds(
    lambda types, tags: (tuple(types), tuple(tags)),
    st.lists(st.sampled_from(TYPES), max_size=2, unique=True),
    st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
).filter(lambda item: item[0] or item[1])
queries = st.one_of(st.none(), st.lists(items, min_size=1, max_size=3))  # None: Query.all()

_namespaces = itertools.count()


def build(shape: list[tuple[tuple[str, ...], tuple[str, ...]]] | None, ns: str) -> Query:
    if shape is None:
        return Query.all()
    return Query([QueryItem(types=types, tags=[tag(t, ns) for t in tags]) for types, tags in shape])


async def scenario(store: EventStore, log: list[Any], shape: Any) -> None:
    ns = f"n{os.getpid()}x{next(_namespaces)}"
    dcb: Any = store.dcb  # type: ignore[attr-defined]
    start = await store.head_position()
    model: list[tuple[int, str, set[str]]] = []  # position, type, tags
    version = 0
    for entry in log:
        if entry[0] == "dcb":
            tags = [tag(t, ns) for t in entry[2]]
            position = await dcb.append(DcbEvent(entry[1], b"{}", tags))
            model.append((position, entry[1], set(tags)))
        else:
            name = f"{ns}-thing"
            events = make_events(ns, version, entry[1], aggregate_name=name)
            if version == 0:
                positions = await store.create(name, ns, events)
            else:
                positions = await store.append(name, ns, version, events)
            version += entry[1]
            model.extend((p, "Happened", {tag("@aggregate", ns)}) for p in positions)
    # The whole query, and each of its items alone, read and checked after several positions.
    whole = build(shape, ns)
    for query in [whole, *(Query([item]) for item in whole.items)]:
        for cut in (0, 0.3, 0.7):
            await check(dcb, query, model, start, cut, ns)


async def check(
    dcb: Any, query: Query, model: list[tuple[int, str, set[str]]], start: int, cut: float, ns: str
) -> None:
    positions = [p for p, _, _ in model]
    after = start if cut == 0 else positions[min(int(cut * len(positions)), len(positions) - 1)]
    expected = [p for p, type_, tags in model if query.matches(type_, tags) and p > after]
    # Query.all() also sees the other examples' events, all at or before ``start``.
    assert [e.position for e in await dcb.read(query, after=after)] == expected
    probe = DcbEvent("Probe", b"{}", [f"{ns}-probe"])
    try:
        position = await dcb.append(probe, AppendCondition(query, after=after))
    except AppendConditionFailed:
        assert expected, "a condition failed that nothing stored selects"
    else:
        assert not expected, "a condition passed that a stored event fails"
        model.append((position, "Probe", {f"{ns}-probe"}))


Runner = Callable[[list[Any], Any], None]


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    """Runs a scenario on one store shared by all the examples of a test."""
    loop = asyncio.new_event_loop()
    store: EventStore
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "queries.db", migrate=True)
    elif request.param == "postgres":
        from eventsignal.stores import PostgresStore

        store = PostgresStore(request.getfixturevalue("postgres_dsn"), migrate=True, max_size=2)
    else:
        from eventsignal.stores import NatsStore

        store = NatsStore(request.getfixturevalue("nats_url"), stream=f"dcb_queries_{uuid4().hex}")
    loop.run_until_complete(store.open())
    try:
        yield lambda log, shape: loop.run_until_complete(scenario(store, log, shape))
    finally:
        loop.run_until_complete(store.close())
        loop.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(log=entries, shape=queries)
def test_queries_and_conditions_agree_with_the_model(
    run: Runner, log: list[Any], shape: Any
) -> None:
    run(log, shape)
