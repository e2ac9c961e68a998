"""The DCB view of a :class:`MemoryStore`: queries checked against its log, in memory.

Every call completes without yielding to the event loop, so a condition is checked and the
events appended in one step that no other coroutine can come between.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventsignal.domain.dcb import AppendCondition, DcbEvent, Query, SequencedEvent
from eventsignal.domain.errors import AppendConditionFailed
from eventsignal.stores.dcb import (
    check_limit,
    checked_condition,
    checked_events,
    matches,
    sequenced,
    to_stored,
)
from eventsignal.stores.memory.records import kept, stored

if TYPE_CHECKING:
    from eventsignal.stores.memory.store import MemoryStore


class MemoryDcb:
    """Reads and appends by query over the log of one :class:`MemoryStore`."""

    __slots__ = ("_store",)

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        check_limit(limit)
        found: list[SequencedEvent] = []
        if limit == 0:
            return found
        store = self._store
        for event in store._after(after or 0):
            if matches(query, event):
                found.append(sequenced(stored(event)))
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int:
        batch = checked_events(events)
        condition = checked_condition(condition)
        store = self._store
        log = store._log
        if condition is not None:
            query = condition.fail_if_events_match
            for event in store._after(condition.after or 0):
                if matches(query, event):
                    raise AppendConditionFailed(condition, event.position)
        now = datetime.now(UTC)
        first = store._head + 1  # positions are never reused, archived or deleted ones neither
        stored_events = [
            to_stored(event, position, now) for position, event in enumerate(batch, start=first)
        ]
        for position, stored_event in enumerate(stored_events, start=first):
            log[position] = kept(stored_event, position, "")
        store._head = first + len(stored_events) - 1
        store._appends += 1
        if store._followers:
            store._wake()
        return first + len(stored_events) - 1
