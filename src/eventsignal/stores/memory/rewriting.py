"""Payload rewrites for :class:`~eventsignal.stores.memory.MemoryStore`.

An aggregate's stream holds the positions of its events, so replacing an event in the log
replaces it there too. The call completes without yielding to the event loop, so it is atomic
like every operation of the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from eventsignal.stores.memory.records import Kept, Log, position_of
from eventsignal.stores.rewriting import PayloadChange, StoredPayload

_Key = tuple[str, str]


class MemoryPayloadRewrite:
    """The :class:`~eventsignal.stores.rewriting.PayloadRewrite` method of the memory store."""

    # Provided by MemoryStore.
    _log: Log
    _archive: dict[_Key, list[Kept]]

    async def rewrite_payloads(
        self, changes: Sequence[PayloadChange], *, archived: bool = False
    ) -> int:
        if archived:
            return self._rewrite_archived(changes)
        log = self._log
        done = 0
        for change in changes:
            event = log.get(change.position)
            if event is None or event.data != change.old:
                continue  # archived or deleted meanwhile, or changed
            log[change.position] = msgspec.structs.replace(event, data=change.new)
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
            key=position_of,
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
