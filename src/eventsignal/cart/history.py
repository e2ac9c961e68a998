"""Reading a cart's past: its decoded events, and its state as it was at any version.

This folds ``store.read_aggregate`` with the aggregate's own event handler and the Signal's
serializer, read-only: nothing enters the pool and nothing is written. It works for any
aggregate type, so it can move into the engine when a time travel API lands there.
"""

from __future__ import annotations

from typing import Any, TypeVar

from eventsignal import AggregateNotFound, Event, Signal
from eventsignal.stores import StoredEvent

S = TypeVar("S")


async def read_history(signal: Signal[Any, Any], aggregate_id: str) -> list[Event[Any]]:
    """Every event of an aggregate, decoded, in version order.

    Raises :class:`~eventsignal.AggregateNotFound` for an id that was never created.
    """
    stored = await signal.store.read_aggregate(signal.name, aggregate_id)
    if not stored and not await signal.store.exists(signal.name, aggregate_id):
        raise AggregateNotFound(signal.name, aggregate_id)
    decode = signal.serializer.decode
    return [_decoded(record, decode(record)) for record in stored]


def fold(signal: Signal[S, Any], events: list[Event[Any]], version: int | None = None) -> S:
    """The state after the events up to and including ``version`` (all of them if ``None``)."""
    apply = signal.config.event_handler
    state = signal.config.initial_state
    for event in events:
        if version is not None and event.version > version:
            break
        state = apply(state, event)
    return state


async def state_at(signal: Signal[S, Any], aggregate_id: str, version: int) -> S:
    """The aggregate's state as it was right after ``version`` (0 is the initial state).

    Raises :class:`ValueError` for a version the aggregate has not reached.
    """
    events = await read_history(signal, aggregate_id)
    if not 0 <= version <= len(events):
        raise ValueError(
            f"{signal.name} {aggregate_id!r} has versions 0 to {len(events)}, not {version}"
        )
    return fold(signal, events, version)


def _decoded(record: StoredEvent, data: Any) -> Event[Any]:
    return Event(
        id=record.id,
        aggregate_name=record.aggregate_name,
        aggregate_id=record.aggregate_id,
        version=record.version,
        name=record.name,
        timestamp=record.timestamp,
        position=record.position,
        data=data,
        metadata=record.metadata,
    )
