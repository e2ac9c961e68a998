"""The event envelope handed to event handlers and subscribers."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID, SafeUUID

import msgspec

E = TypeVar("E")


class Event(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """One recorded fact about one aggregate.

    ``data`` is the user's own event object; the other fields are what the library knows about it.
    ``position`` is the event's place in the store's global order, assigned when it is appended:
    subscribers and rebuilds see it, but an event handler applying a command's new events sees 0,
    since the events are applied before they are stored (so a failing handler stores nothing).
    State should therefore not depend on positions.
    """

    id: UUID
    aggregate_name: str
    aggregate_id: str
    version: int
    name: str
    timestamp: datetime
    position: int
    data: E
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)


_UUID_NEW = UUID.__new__
_SET = object.__setattr__
_UNKNOWN = SafeUUID.unknown
_RANDOM_BITS = random.getrandbits  # the module's generator is reseeded in forked children


def new_event_id() -> UUID:
    """A fresh time-ordered event id (UUID version 7).

    Ordered ids keep the unique index on event ids append-mostly in SQL stores, and building the
    UUID directly skips the validation of ``UUID.__init__``, which matters on the command path.
    """
    bits = _RANDOM_BITS(74)
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7000 << 64
        | (bits >> 62) << 64
        | 0x8000_0000_0000_0000
        | (bits & 0x3FFF_FFFF_FFFF_FFFF)
    )
    event_id = _UUID_NEW(UUID)
    _SET(event_id, "int", value)
    _SET(event_id, "is_safe", _UNKNOWN)
    return event_id
