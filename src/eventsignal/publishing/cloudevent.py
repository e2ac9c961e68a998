"""The CloudEvents 1.0 envelope of a published event, built with msgspec.

One :class:`CloudEvent` per published event: ``id`` is the event id (the consumers' key to
drop a redelivery), ``subject`` the aggregate id, and three extensions say where the event sits:
``sequence`` (its global position, zero-padded so that text order is position order, as the
sequence extension asks), ``aggregateversion`` and ``partitionkey`` (the aggregate id, so a
broker that partitions keeps each aggregate's events in order). ``traceparent`` is copied from
the event's metadata when the command carried one.

Structured mode is the whole envelope as one JSON document; binary mode puts the attributes in
headers (``ce-`` prefixed on HTTP, NATS and Redis, ``cloudEvents:`` on AMQP) and the data alone in
the body. Each sink uses the mode its transport expects unless told otherwise.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T")
Mode = Literal["structured", "binary"]
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
SEQUENCE_DIGITS = 20  # the largest 64-bit position has 20 digits

_encode = msgspec.json.Encoder().encode
_NO_DATA = msgspec.Raw(b"")


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One CloudEvents 1.0 event whose data is JSON (kept encoded, as ``data``)."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str | None = None
    data: msgspec.Raw = _NO_DATA  # omitted when there is no data
    sequence: str | None = None
    aggregateversion: int | None = None
    partitionkey: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def structured(self) -> bytes:
        """The structured-mode body: the whole event as ``application/cloudevents+json``."""
        return _encode(self)

    def body(self) -> bytes:
        """The binary-mode body: the data alone."""
        return bytes(self.data)

    def headers(self, prefix: str = "ce-") -> dict[str, str]:
        """The binary-mode headers: each attribute but ``data`` under ``prefix``, and the data's
        ``content-type``."""
        found: dict[str, str] = {}
        for name in self.__struct_fields__:
            if name == "data":
                continue
            value = getattr(self, name)
            if value is None:
                continue
            if name == "datacontenttype":
                found["content-type"] = value
            elif isinstance(value, datetime):
                found[prefix + name] = value.isoformat().replace("+00:00", "Z")
            else:
                found[prefix + name] = str(value)
        return found

    def decode(self, cls: builtins.type[T]) -> T:
        """The data as an instance of ``cls`` (a dataclass, msgspec Struct, ``dict``...)."""
        return msgspec.json.decode(self.body() or b"null", type=cls)


_decode_structured = msgspec.json.Decoder(CloudEvent).decode


def from_structured(body: bytes) -> CloudEvent:
    """A CloudEvent from its structured JSON (unknown extensions are ignored)."""
    return _decode_structured(body)


def from_headers(headers: Mapping[str, Any], body: bytes, prefix: str = "ce-") -> CloudEvent:
    """A CloudEvent from binary-mode headers and body; the data must be JSON."""
    attributes: dict[str, Any] = {}
    for key, value in headers.items():
        name = key.lower()
        if isinstance(value, bytes):
            value = value.decode()
        if name.startswith(prefix.lower()):
            attributes[name[len(prefix) :]] = value
        elif name == "content-type":
            attributes["datacontenttype"] = value
    if body:
        attributes["data"] = msgspec.Raw(body)
    return msgspec.convert(attributes, CloudEvent, strict=False)


def received(headers: Mapping[str, Any] | None, body: bytes, prefix: str = "ce-") -> CloudEvent:
    """A received CloudEvent in either mode: binary when ``headers`` carry ``<prefix>id``."""
    if headers and any(str(k).lower() == f"{prefix.lower()}id" for k in headers):
        return from_headers(headers, body, prefix)
    return from_structured(body)


def sequence_of(position: int) -> str:
    """The ``sequence`` attribute of the event at ``position``."""
    return str(position).zfill(SEQUENCE_DIGITS)
