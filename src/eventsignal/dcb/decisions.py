"""Declarative decisions on dynamic consistency boundaries.

A :class:`Decision` says, for one command type, which projections it needs (each: an initial
state, an event handler and the query it reads, derived from the command) and a handler that
gets their states and returns tagged events. :class:`DecisionEngine` runs it: it reads the union
of the queries in one read (one consistent state of the store), folds each projection over the
events its own query selects, calls the handler, and appends its events on the condition that
nothing the union selects was stored after the last position read. When another writer got there
first, the engine starts over, a bounded number of times.

A handler that returns no events stores nothing and takes no position: a decision that changes
nothing never makes another fail.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Generic, TypeVar

import msgspec

from eventsignal.domain.dcb import AppendCondition, DcbEvent, Query
from eventsignal.domain.errors import (
    AppendConditionFailed,
    ConfigurationError,
    InvalidHandlerResult,
    UnknownEventType,
)
from eventsignal.serialization import EventSerializer, bytes_decoder
from eventsignal.stores.dcb import DCB_AGGREGATE, DcbStore

S = TypeVar("S")
C = TypeVar("C")

_encode = msgspec.json.Encoder().encode
_UNDECODED = object()


def event_classes(events: Iterable[type[Any]] | Mapping[str, type[Any]]) -> dict[str, type[Any]]:
    """Event classes by the names they are stored under: their class names, or a mapping's."""
    return dict(events) if isinstance(events, Mapping) else {c.__name__: c for c in events}


def dcb_events(events: Iterable[type[Any]] | Mapping[str, type[Any]]) -> EventSerializer:
    """What a :class:`~eventsignal.subscriptions.Subscription` needs (one of its ``configs``)
    to receive DCB events of these classes, in the log's global order beside aggregate events.

    A handler sees each as an :class:`~eventsignal.Event` with an empty ``aggregate_name``,
    its first tag as ``aggregate_id`` (the partition key) and its position as ``version``.
    """
    return EventSerializer(DCB_AGGREGATE, event_classes(events))


@dataclass(frozen=True, slots=True)
class Tagged:
    """A user event with the tags it is to be found by."""

    event: object
    tags: Collection[str] = ()


@dataclass(frozen=True, slots=True)
class Projection(Generic[S, C]):
    """A state a decision needs: where it starts, how an event moves it, and which events
    (``query(command)``) move it."""

    initial_state: S
    event_handler: Callable[[S, Any], S]
    query: Callable[[C], Query]


@dataclass(frozen=True, slots=True)
class Decision(Generic[C]):
    """How one command type is decided: ``handler(command, states)`` gets the states of
    ``projections`` by name and returns :class:`Tagged` events (or raises
    :class:`~eventsignal.CommandRejected`)."""

    command: type[C]
    projections: Mapping[str, Projection[Any, C]]
    handler: Callable[[C, Mapping[str, Any]], Sequence[Tagged]]


@dataclass(slots=True)
class Outcome:
    """What deciding a command did: the position of its last event (``None`` when it decided
    on no events) and how many attempts it took."""

    position: int | None
    attempts: int
    events: Sequence[Tagged] = field(default_factory=tuple)


class DecisionEngine:
    """Runs :class:`Decision` objects on one store's DCB view.

    ``events`` are the user event classes the decisions read and write (stored under their class
    names, or the names of a mapping); ``max_attempts`` bounds how often a command is decided
    again after losing its condition to another writer, after which
    :class:`~eventsignal.AppendConditionFailed` is raised. ``cache_size`` boundaries keep their
    projections' states between commands (like the pool keeps aggregates), so a decision on a
    known boundary reads only the events since; 0 reads every boundary whole each time.
    Projection states must therefore be immutable: handlers return new ones.
    """

    def __init__(
        self,
        dcb: DcbStore,
        decisions: Iterable[Decision[Any]],
        events: Iterable[type[Any]] | Mapping[str, type[Any]],
        *,
        max_attempts: int = 10,
        cache_size: int = 1000,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if cache_size < 0:
            raise ConfigurationError("cache_size must be 0 (no cache) or more")
        self.dcb = dcb
        self.max_attempts = max_attempts
        self.cache_size = cache_size
        # The projections' states of recent boundaries, as of the last position read: the next
        # decision on the same boundary reads only what came after (the log is append-only and
        # positions become visible in order, so nothing can appear before that position).
        self._cache: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], int | None]] = OrderedDict()
        named = event_classes(events)
        self._names = {cls: name for name, cls in named.items()}
        self._decoders = {name: bytes_decoder(cls) for name, cls in named.items()}
        self._decisions: dict[type[Any], Decision[Any]] = {}
        for decision in decisions:
            if decision.command in self._decisions:
                raise ConfigurationError(f"two decisions for {decision.command.__name__}")
            if not decision.projections:
                raise ConfigurationError(
                    f"the decision of {decision.command.__name__} needs a projection"
                )
            self._decisions[decision.command] = decision

    async def handle(self, command: object) -> Outcome:
        """Decide ``command`` and store its events; see the module's docstring."""
        decision = self._decisions.get(type(command))
        if decision is None:
            raise ConfigurationError(f"no decision for {type(command).__name__}")
        failed: AppendConditionFailed | None = None
        for attempt in range(1, self.max_attempts + 1):
            queries = {name: p.query(command) for name, p in decision.projections.items()}
            boundary = reduce(Query.__or__, queries.values())
            states, last = await self._states(decision, queries, boundary)
            decided = decision.handler(command, states)
            if not isinstance(decided, Sequence) or isinstance(decided, str | bytes):
                raise InvalidHandlerResult("dcb", "", type(command).__name__, decided)
            if not decided:
                return Outcome(None, attempt)
            condition = AppendCondition(boundary, after=last)
            try:
                position = await self.dcb.append([self._encode(t) for t in decided], condition)
            except AppendConditionFailed as exc:
                failed = exc
                continue
            return Outcome(position, attempt, tuple(decided))
        assert failed is not None
        raise failed

    async def _states(
        self, decision: Decision[Any], queries: dict[str, Query], boundary: Query
    ) -> tuple[dict[str, Any], int | None]:
        """The projections' states and the last position read, in one read of the boundary
        (only what came after the cached states, when there are some)."""
        key = (decision.command, *queries.values())
        cached = self._cache.get(key) if self.cache_size else None
        if cached is None:
            states = {name: p.initial_state for name, p in decision.projections.items()}
            last = None
        else:
            states, last = dict(cached[0]), cached[1]
        read = await self.dcb.read(boundary, after=last)
        for sequenced in read:
            event = sequenced.event
            decoded: Any = _UNDECODED
            for name, projection in decision.projections.items():
                if queries[name].matches(event.type, event.tags):
                    if decoded is _UNDECODED:
                        decoded = self._decode(event)
                    states[name] = projection.event_handler(states[name], decoded)
        if read:
            last = read[-1].position
        if self.cache_size:
            self._cache[key] = (states, last)
            self._cache.move_to_end(key)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return dict(states), last

    def _encode(self, tagged: object) -> DcbEvent:
        if not isinstance(tagged, Tagged):
            raise ConfigurationError(
                f"a decision returns Tagged events, not {type(tagged).__name__}"
            )
        name = self._names.get(type(tagged.event))
        if name is None:
            raise UnknownEventType(
                f"{type(tagged.event).__name__} is not one of the engine's events",
                aggregate_name="",
                aggregate_id="",
                version=0,
                event_name=type(tagged.event).__name__,
            )
        return DcbEvent(name, _encode(tagged.event), tagged.tags)

    def _decode(self, event: DcbEvent) -> Any:
        decode = self._decoders.get(event.type)
        if decode is None:
            raise UnknownEventType(
                f"a query selected an event of type {event.type!r}, which the engine does not "
                "know: add its class to events=, or narrow the query's types",
                aggregate_name="",
                aggregate_id="",
                version=0,
                event_name=event.type,
            )
        return decode(event.data)
