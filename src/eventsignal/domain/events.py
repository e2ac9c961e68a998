"""The event envelope handed to event handlers and subscribers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import msgspec

E = TypeVar("E")


class Event(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """One recorded fact about one aggregate.

    ``data`` is the user's own event object; the other fields are what the library knows about it.
    ``position`` is the event's place in the store's global order, assigned when it is appended.
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
