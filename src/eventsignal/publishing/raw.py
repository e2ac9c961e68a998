"""Publishing events as stored, without the classes that wrote them.

A relay run from the command line has no access to the application's event classes. A
:class:`StoredJSON` serializer hands each stored event's JSON over untouched (as
``msgspec.Raw``), so the CloudEvent's data is byte for byte what was stored. Nothing is upcast:
old revisions go out in their old shape (their CloudEvent ``type`` is the same; the data
differs), and a store written through a :class:`~eventsignal.serialization.Transcoder` needs the
application's config instead.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventsignal.serialization import EventSerializer
from eventsignal.stores.base import StoredEvent


class StoredJSON(EventSerializer):
    """Reads the events of ``aggregate_name`` as their stored JSON."""

    def __init__(self, aggregate_name: str) -> None:
        super().__init__(aggregate_name, {})

    def decode_all(self, stored: StoredEvent) -> list[Any]:
        if stored.defect is not None:
            raise self._error(stored, stored.defect)
        return [msgspec.Raw(stored.data)]
