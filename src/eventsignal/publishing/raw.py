"""Publishing events as stored, without the classes that wrote them.

A relay run from the command line has no access to the application's event classes. A
:class:`StoredJSON` serializer hands each stored event's JSON over untouched (as
``msgspec.Raw``), so the CloudEvent's data is byte for byte what was stored. Nothing is upcast:
old revisions go out in their old shape (their CloudEvent ``type`` is the same; the data
differs), and a store written through a :class:`~eventsignal.serialization.Transcoder` needs the
application's config instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import msgspec

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import UnknownEventType
from eventsignal.serialization import EventSerializer
from eventsignal.stores.base import StoredEvent


class StoredJSON(EventSerializer):
    """Reads the events of ``aggregate_name`` as their stored JSON.

    With ``names`` (the event names of the aggregate's config), an event of another name is an
    :class:`~eventsignal.UnknownEventType`, as it would be when decoding. Publishers without a
    transform read this way the aggregate types whose config has no upcasters: what is stored
    is what re-encoding the decoded event would give, without the round trip.
    """

    def __init__(self, aggregate_name: str, names: Collection[str] | None = None) -> None:
        super().__init__(aggregate_name, {})
        self._known = None if names is None else frozenset(names)

    def decode_all(self, stored: StoredEvent) -> list[Any]:
        if stored.defect is not None:
            raise self._error(stored, stored.defect)
        if self._known is not None and stored.name not in self._known:
            raise UnknownEventType(
                "no event class is registered under this name",
                aggregate_name=stored.aggregate_name,
                aggregate_id=stored.aggregate_id,
                version=stored.version,
                event_name=stored.name,
                position=stored.position,
            )
        return [msgspec.Raw(stored.data)]


def verbatim(
    configs: Iterable[AggregateConfig[Any, Any] | EventSerializer],
) -> list[AggregateConfig[Any, Any] | EventSerializer]:
    """``configs`` with each config that has no upcasters read as :class:`StoredJSON`."""
    return [
        StoredJSON(c.name, c.event_types)
        if isinstance(c, AggregateConfig) and not c.upcasters
        else c
        for c in configs
    ]
