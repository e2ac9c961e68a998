"""How :class:`~eventsignal.stores.memory.MemoryStore` keeps an event.

A :class:`~eventsignal.stores.base.StoredEvent` holds its id as a ``UUID``, an object the cyclic
garbage collector tracks: a store keeping every event for the life of the process would hand the
collector one more object per event to walk, on every full collection, for good. The store keeps
the same envelope with the id as the UUID's 128 bits instead (an ``int``, which the collector
ignores), in a struct it ignores as well, and builds the ``StoredEvent`` again when it is read.

For the same reason an aggregate's stream is a ``bytearray`` of the positions of its events (a
list or an ``array`` would be one more tracked object per aggregate), and the log is a dict from
position to event: a dict holding only such keys and values is left untracked, where a list is
tracked whatever it holds, and a full collection would visit every event in it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

import msgspec

from eventsignal.domain.events import uuid_from_int
from eventsignal.stores.base import StoredEvent

_POSITION = struct.Struct("q")  # native order, as memoryview.cast("q") reads it back
#: ``position`` as an entry of a stream: ``stream += pack(position)``.
pack = _POSITION.pack
ENTRY = _POSITION.size  # bytes per event in a stream: ``len(stream) // ENTRY`` events


def stream_of(positions: Iterable[int] = ()) -> bytearray:
    """A stream holding ``positions``."""
    return bytearray(b"".join(map(pack, positions)))


def positions_in(stream: bytearray, start: int = 0, stop: int | None = None) -> list[int]:
    """The positions of the stream's events ``start`` to ``stop`` (indexes, as in a slice)."""
    with memoryview(stream) as view, view.cast("q") as entries:
        return entries[start:stop].tolist()


class Kept(msgspec.Struct, frozen=True, gc=False):
    """A stored event as the memory store keeps it (see the module's docstring).

    Left out of the garbage collector (``gc=False``): it holds scalars, bytes, a timestamp and
    string metadata, none of which can reach back to it.
    """

    position: int
    id: int  # the event id's UUID.int
    aggregate_name: str
    aggregate_id: str
    version: int
    name: str
    timestamp: datetime
    data: bytes
    metadata: Mapping[str, str]
    tenant: str
    defect: str | None


def kept(event: StoredEvent, position: int, tenant: str) -> Kept:
    """``event`` as kept at ``position`` (in ``tenant``'s stream, when one is given)."""
    return Kept(
        position,
        event.id.int,
        event.aggregate_name,
        event.aggregate_id,
        event.version,
        event.name,
        event.timestamp,
        event.data,
        event.metadata,
        tenant or event.tenant,
        event.defect,
    )


def stored(event: Kept) -> StoredEvent:
    """A kept event as the store hands it out."""
    return StoredEvent(
        id=uuid_from_int(event.id),
        aggregate_name=event.aggregate_name,
        aggregate_id=event.aggregate_id,
        version=event.version,
        name=event.name,
        timestamp=event.timestamp,
        data=event.data,
        metadata=event.metadata,
        position=event.position,
        defect=event.defect,
        tenant=event.tenant,
    )


def position_of(event: Kept) -> int:
    """The sort key of the log."""
    return event.position


Log = dict[int, Kept]
"""The events by position, in position order (see the module's docstring)."""


def read(log: Log, positions: Iterable[int]) -> list[StoredEvent]:
    """The events at ``positions``, which the log holds, in that order."""
    return [stored(log[p]) for p in positions]


def after(log: Log, position: int, head: int) -> Iterator[Kept]:
    """The events of ``log`` after ``position``, in order; ``head`` is the last position given.

    Positions of archived, deleted or truncated events are skipped.
    """
    get = log.get
    for at in range(max(position, 0) + 1, head + 1):
        event = get(at)
        if event is not None:
            yield event
