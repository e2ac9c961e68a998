"""Payload rewrites for :class:`~eventsignal.stores.memory.MemoryStore`.

The log and the aggregate's stream hold the same event object: both get the new one. The call
completes without yielding to the event loop, so it is atomic like every operation of the store.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import msgspec

from eventsignal.stores.base import StoredEvent
from eventsignal.stores.rewriting import PayloadChange, StoredPayload

_Key = tuple[str, str]


def _position(event: StoredEvent) -> int:
    return event.position


class MemoryPayloadRewrite:
    """The :class:`~eventsignal.stores.rewriting.PayloadRewrite` method of the memory store."""

    # Provided by MemoryStore.
    _streams: dict[_Key, list[StoredEvent]]
    _log: list[StoredEvent]
    _trimmed: dict[_Key, int]
    _archive: dict[_Key, list[StoredEvent]]

    async def rewrite_payloads(
        self, changes: Sequence[PayloadChange], *, archived: bool = False
    ) -> int:
        if archived:
            return self._rewrite_archived(changes)
        log = self._log
        done = 0
        for change in changes:
            index = bisect_left(log, change.position, key=_position)
            if index == len(log) or log[index].position != change.position:
                continue  # archived or deleted meanwhile
            event = log[index]
            if event.data != change.old:
                continue
            new = msgspec.structs.replace(event, data=change.new)
            log[index] = new
            key = (event.aggregate_name, event.aggregate_id)
            stream = self._streams.get(key)
            at = event.version - 1 - self._trimmed.get(key, 0)
            if stream is not None and 0 <= at < len(stream) and stream[at] is event:
                stream[at] = new
            done += 1
        return done

    def _rewrite_archived(self, changes: Sequence[PayloadChange]) -> int:
        wanted = {change.position: change for change in changes}
        done = 0
        for events in self._archive.values():
            for at, event in enumerate(events):
                change = wanted.get(event.position)
                if change is not None and event.data == change.old:
                    events[at] = msgspec.structs.replace(event, data=change.new)
                    done += 1
        return done

    async def archived_payloads(self, after_position: int, limit: int) -> Sequence[StoredPayload]:
        kept = sorted(
            (e for events in self._archive.values() for e in events if e.position > after_position),
            key=_position,
        )
        return [
            StoredPayload(
                position=e.position,
                aggregate_name=e.aggregate_name,
                aggregate_id=e.aggregate_id,
                version=e.version,
                name=e.name,
                data=e.data,
            )
            for e in kept[:limit]
        ]
