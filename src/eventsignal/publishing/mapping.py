"""From a stored event to its CloudEvent: the attributes the publisher was configured with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from eventsignal.domain.events import Event
from eventsignal.domain.evolution import split_stored_name
from eventsignal.publishing.cloudevent import SEQUENCE_DIGITS, CloudEvent
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

    __slots__ = ("_named", "_sources", "_type_function", "source", "transform", "types")

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
        self._type_function = types is not None and not isinstance(types, Mapping)
        self._sources: dict[str, str] = {}
        # (aggregate name, stored event name) -> (source, type): one lookup per event.
        self._named: dict[tuple[str, str], tuple[str, str]] = {}

    def source_of(self, aggregate_name: str) -> str:
        """The ``source`` of the events of ``aggregate_name``."""
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
        """The ``type`` of ``event`` when no transform names it."""
        if self._type_function:
            return self.types(event)  # type: ignore[misc,operator]
        return self._names(event.aggregate_name, event.name)[1]

    def _names(self, aggregate_name: str, stored_name: str) -> tuple[str, str]:
        key = (aggregate_name, stored_name)
        found = self._named.get(key)
        if found is None:
            name = split_stored_name(stored_name)[0]
            types: Any = None if self._type_function else self.types
            kind = (types or {}).get(name) or f"{aggregate_name}.{name}"
            found = (self.source_of(aggregate_name), kind)
            self._named[key] = found
        return found

    def __call__(self, event: Event[Any]) -> CloudEvent | None:
        """The CloudEvent for ``event``, or ``None`` when the transform skips it."""
        data: object = event.data
        transform = self.transform
        named = self._named.get((event.aggregate_name, event.name))
        if named is None:
            named = self._names(event.aggregate_name, event.name)
        source, kind = named
        if transform is not None:
            public = transform(event)
            if public is None:
                return None
            kind, data = public
        elif self._type_function:
            kind = self.types(event)  # type: ignore[misc,operator]
        metadata = event.metadata
        return CloudEvent(
            specversion="1.0",
            id=str(event.id),
            source=source,
            type=kind,
            subject=event.aggregate_id,
            time=event.timestamp,
            datacontenttype=JSON,
            data=data if type(data) is msgspec.Raw else msgspec.Raw(encode_json(data)),
            sequence=str(event.position).zfill(SEQUENCE_DIGITS),
            aggregateversion=event.version,
            partitionkey=event.aggregate_id,
            traceparent=metadata.get("traceparent") if metadata else None,
            tracestate=metadata.get("tracestate") if metadata else None,
        )
