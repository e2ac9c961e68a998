"""From a stored event to its CloudEvent: the attributes the publisher was configured with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from eventsignal.domain.events import Event
from eventsignal.domain.evolution import split_stored_name
from eventsignal.publishing.cloudevent import CloudEvent, sequence_of
from eventsignal.publishing.transform import Transform
from eventsignal.serialization import encode_json

Source = str | Mapping[str, str] | Callable[[str], str]
TypeName = Mapping[str, str] | Callable[[Event[Any]], str]

JSON = "application/json"


def default_source(aggregate_name: str) -> str:
    """The ``source`` of an aggregate type's events unless configured: ``/<aggregate_name>``."""
    return f"/{aggregate_name}"


class CloudEventMapper:
    """Builds the CloudEvent of each event.

    ``source``: one URI for every event, a mapping from aggregate name to URI, or a function of
    the aggregate name; default :func:`default_source`. ``types``: a mapping from event name to
    CloudEvent ``type`` or a function of the event; default ``<aggregate_name>.<EventName>``.
    ``transform`` (a :class:`Transform`) publishes public integration events instead, under the
    types it declares.
    """

    __slots__ = ("_sources", "_types", "source", "transform", "types")

    def __init__(
        self,
        *,
        source: Source | None = None,
        types: TypeName | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.source = source
        self.types = types
        self.transform = transform
        self._sources: dict[str, str] = {}
        self._types: dict[tuple[str, str], str] = {}

    def source_of(self, aggregate_name: str) -> str:
        found = self._sources.get(aggregate_name)
        if found is None:
            source = self.source
            if source is None:
                found = default_source(aggregate_name)
            elif isinstance(source, str):
                found = source
            elif isinstance(source, Mapping):
                found = source.get(aggregate_name) or default_source(aggregate_name)
            else:
                found = source(aggregate_name)
            self._sources[aggregate_name] = found
        return found

    def type_of(self, event: Event[Any]) -> str:
        types = self.types
        if types is not None and not isinstance(types, Mapping):
            return types(event)
        key = (event.aggregate_name, event.name)
        found = self._types.get(key)
        if found is None:
            name = split_stored_name(event.name)[0]
            found = (types or {}).get(name) or f"{event.aggregate_name}.{name}"
            self._types[key] = found
        return found

    def __call__(self, event: Event[Any]) -> CloudEvent | None:
        """The CloudEvent for ``event``, or ``None`` when the transform skips it."""
        data: object = event.data
        transform = self.transform
        if transform is None:
            kind = self.type_of(event)
        else:
            public = transform(event)
            if public is None:
                return None
            kind, data = public
        metadata = event.metadata
        return CloudEvent(
            specversion="1.0",
            id=str(event.id),
            source=self.source_of(event.aggregate_name),
            type=kind,
            subject=event.aggregate_id,
            time=event.timestamp,
            datacontenttype=JSON,
            data=data if type(data) is msgspec.Raw else msgspec.Raw(encode_json(data)),
            sequence=sequence_of(event.position),
            aggregateversion=event.version,
            partitionkey=event.aggregate_id,
            traceparent=metadata.get("traceparent") if metadata else None,
            tracestate=metadata.get("tracestate") if metadata else None,
        )
