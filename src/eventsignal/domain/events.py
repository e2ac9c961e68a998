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
    State should therefore not depend on positions. ``tenant`` names the tenant whose stream
    holds the event (``""``: the default tenant, all an application without tenants has).
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
    tenant: str = ""


_UUID_NEW = UUID.__new__
# UUID keeps its value in slots: setting them through their descriptors skips the validation of
# ``UUID.__init__`` and the name lookup of ``object.__setattr__``.
_SET_INT = UUID.__dict__["int"].__set__
_SET_SAFE = UUID.__dict__["is_safe"].__set__
_UNKNOWN = SafeUUID.unknown
_RANDOM_BITS = random.getrandbits  # the module's generator is reseeded in forked children
_TIME_NS = time.time_ns
# Below the 48-bit millisecond timestamp: 4 version bits, 12 random bits, 2 variant bits and
# 62 random bits. One 80-bit draw is masked to leave the version and variant bits free.
_RANDOM_MASK = ((1 << 80) - 1) & ~(0xF << 76) & ~(0x3 << 62)
_VERSION_AND_VARIANT = 0x7 << 76 | 0x2 << 62


def new_event_id() -> UUID:
    """A fresh time-ordered event id (UUID version 7).

    Ordered ids keep the unique index on event ids append-mostly in SQL stores, and building the
    UUID directly skips the validation of ``UUID.__init__``, which matters on the command path.
    """
    event_id = _UUID_NEW(UUID)
    _SET_INT(
        event_id,
        (_TIME_NS() // 1_000_000) << 80 | (_RANDOM_BITS(80) & _RANDOM_MASK) | _VERSION_AND_VARIANT,
    )
    _SET_SAFE(event_id, _UNKNOWN)
    return event_id


_FROM_BYTES = int.from_bytes


def uuid_from_int(value: int) -> UUID:
    """``UUID(int=value)`` built through the slots, as :func:`new_event_id` does, for a value
    known to be a UUID's 128 bits (one taken from ``UUID.int``)."""
    event_id = _UUID_NEW(UUID)
    _SET_INT(event_id, value)
    _SET_SAFE(event_id, _UNKNOWN)
    return event_id


def uuid_from_bytes(raw: bytes) -> UUID:
    """``UUID(bytes=raw)`` built through the slots, as :func:`new_event_id` does: a store reading
    thousands of event ids at once skips the checks of ``UUID.__init__`` for each.

    Raises ``ValueError`` for anything but 16 bytes, as ``UUID`` does.
    """
    if len(raw) != 16:
        raise ValueError("bytes is not a 16-char string")
    return uuid_from_int(_FROM_BYTES(raw, "big"))
