"""How :class:`~eventsignal.stores.NatsStore` lays events out in JetStream.

Pure functions and structs, no I/O, so the layout can be read (and tested) on its own.

* **Subjects.** Every aggregate has one subject, ``<stream>.<type token>.<id token>``. A token is
  the name itself when it holds only ``A-Z a-z 0-9 _ -``; anything else (dots, spaces, ``*``, ``>``,
  non-ASCII) becomes ``~`` followed by the unpadded lowercase base32 of its UTF-8 bytes. Plain
  names never contain ``~``, so decoding is unambiguous, and an id of at most 200 characters gives
  a token of at most 1281 characters.
* **Messages: one per event** (:data:`EVENTS`, the layout of a stream created on a server with
  atomic batch publish, 2.12 or later). The body is the event's payload as the application
  encoded it; CloudEvents binary-mode headers say the rest (``ce-id``, ``ce-type`` =
  ``<aggregate type>.<event name>``, ``ce-source`` = ``/<aggregate type>``, ``ce-subject`` = the
  aggregate id, ``ce-time``, and the extension ``ce-aggregateversion``: the aggregate's version
  after the event), so any tool can read the stream. A command's events are published as one
  atomic batch, stored at consecutive sequences, the first expecting the aggregate's newest
  sequence. An aggregate created without events gets a creation marker (below).
* **Messages: one per command** (:data:`COMMANDS`, streams of servers without atomic batches and
  streams written before). One message holds all the events of a command (msgpack), so a command
  is stored atomically. The first message of a subject is its creation marker, holding the events
  the aggregate was created with (often none). Headers carry the aggregate's version after the
  message and the number of events in it (``Es-Count``, which only this layout has).
* **Both.** Every message carries the aggregate's creation time (``Es-Created``) and, past the
  first command, the stream sequence of its first message (``Es-Origin``), so the newest message
  of a subject says all a writer and a listing need. The server keeps the
  ``Nats-Expected-Last-Subject-Sequence`` header of a command's first message, which links it to
  the previous command of its aggregate. A reader tells the layouts apart message by message, so
  a stream holding both reads as one.
* **Positions.** The stream sequence orders messages across all aggregates. An event's position is
  ``sequence * SLOTS + slot``, where the last event of a message takes the top slot
  (``SLOTS - 1``) and earlier ones the slots just below it: an event of its own message sits in
  the top slot. Positions are therefore increasing and global, with gaps, and
  ``last_sequence * SLOTS + SLOTS - 1`` is the position of the newest event (or, when the newest
  message is an empty creation marker, a position just past every event).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from string import punctuation
from typing import Final
from urllib.parse import quote, unquote
from uuid import UUID, uuid4

import msgspec

from eventsignal.stores.base import StoredEvent
from eventsignal.stores.dcb import DCB_AGGREGATE, dcb_envelope
from eventsignal.stores.rows import UNREADABLE_ID, UNREADABLE_TIME, decode_metadata

SLOTS = 100_000
"""Positions per stream message, hence the most events one command may store."""

EVENTS: Final = "event-per-message"
"""The layout of a stream written one message per event, each command as one atomic batch."""

COMMANDS: Final = "command-per-message"
"""The layout of a stream written one message per command."""

LAYOUT = "eventsignal.layout"
"""The key of the stream's metadata that records its layout."""

VERSION = "Es-Version"
COUNT = "Es-Count"
CREATED = "Es-Created"
ORIGIN = "Es-Origin"
METADATA = "Es-Metadata"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"

SPECVERSION = "ce-specversion"
EVENT_ID = "ce-id"
SOURCE = "ce-source"
TYPE = "ce-type"
SUBJECT = "ce-subject"
TIME = "ce-time"
EVENT_VERSION = "ce-aggregateversion"
"""CloudEvents extension: the aggregate's version after the event (1 for its first)."""

_SAFE = re.compile(r"[!#$&-~]*")  # printable ASCII but for '"' and '%': a header value as it is
_SAFE_PUNCTUATION = punctuation.replace('"', "").replace("%", "")
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def encode_token(text: str) -> str:
    """A subject token for ``text`` that :func:`decode_token` turns back into it."""
    if _PLAIN.fullmatch(text):
        return text
    return "~" + base64.b32encode(text.encode()).decode().rstrip("=").lower()


def decode_token(token: str) -> str:
    if not token.startswith("~"):
        return token
    body = token[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8)).decode()


def subject_of(stream: str, aggregate_name: str, aggregate_id: str) -> str:
    return f"{stream}.{encode_token(aggregate_name)}.{encode_token(aggregate_id)}"


def split_subject(subject: str) -> tuple[str, str]:
    """The aggregate type and id a subject belongs to."""
    _, name, aggregate_id = subject.split(".")
    return decode_token(name), decode_token(aggregate_id)


def positions_of(sequence: int, count: int) -> range:
    """The positions of the ``count`` events stored in the message at ``sequence``."""
    top = sequence * SLOTS + SLOTS
    return range(top - count, top)


def batch_positions(last: int, messages: int) -> range:
    """The positions of the events of an atomic batch of ``messages`` ending at ``last``."""
    first = last - messages + 1
    return range(first * SLOTS + SLOTS - 1, last * SLOTS + SLOTS, SLOTS)


def head_of(sequence: int) -> int:
    """The highest position a message at ``sequence`` may hold; 0 for an empty stream."""
    return sequence * SLOTS + SLOTS - 1 if sequence > 0 else 0


def first_sequence_after(position: int) -> int:
    """The first stream sequence that may hold an event past ``position``."""
    sequence, slot = divmod(max(position, 0), SLOTS)
    return max(sequence + 1 if slot == SLOTS - 1 else sequence, 1)


def header_text(text: str) -> str:
    """``text`` as a CloudEvents header value: percent-encoded (UTF-8) where it holds a space,
    ``"``, ``%`` or anything outside printable ASCII, as the CloudEvents HTTP binding says."""
    if _SAFE.fullmatch(text):
        return text
    return quote(text, safe=_SAFE_PUNCTUATION)


def header_value(text: str) -> str:
    """The text :func:`header_text` encoded."""
    return unquote(text) if "%" in text else text


_metadata_json = msgspec.json.Encoder().encode


def _metadata_header(metadata: Mapping[str, str]) -> str:
    text = _metadata_json(metadata).decode()
    if text.isascii():  # control characters come out escaped already
        return text
    # Non-ASCII escaped too (\uXXXX), so that every tool reads the header the same.
    return json.dumps(dict(metadata), separators=(",", ":"))


def event_messages(
    aggregate_name: str,
    events: Sequence[StoredEvent],
    created: str,
    origin: int,
    expected: int,
) -> list[tuple[dict[str, str], bytes]]:
    """One message (headers, body) per event of a command, the first expecting ``expected``;
    several make one atomic batch (the last commits it).

    ``origin`` is the stream sequence of the aggregate's first message, 0 while it is being
    created (then each event's own sequence tells it, the batch being stored consecutively).
    """
    source = source_of(aggregate_name)
    subject = header_text(events[0].aggregate_id)
    messages: list[tuple[dict[str, str], bytes]] = []
    shared: Mapping[str, str] | None = None  # a command's events share one mapping
    metadata = ""
    types: dict[str, str] = {}  # and mostly a few event names
    for event in events:
        kind = types.get(event.name)
        if kind is None:
            kind = types[event.name] = header_text(f"{aggregate_name}.{event.name}")
        headers = {
            SPECVERSION: "1.0",
            EVENT_ID: str(event.id),
            SOURCE: source,
            TYPE: kind,
            SUBJECT: subject,
            TIME: event.timestamp.isoformat().replace("+00:00", "Z"),
            EVENT_VERSION: str(event.version),
            CREATED: created,
        }
        if origin:
            headers[ORIGIN] = str(origin)
        if event.metadata:
            if event.metadata is not shared:
                shared, metadata = event.metadata, _metadata_header(event.metadata)
            headers[METADATA] = metadata
        messages.append((headers, event.data))
    messages[0][0][EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected)
    if len(messages) > 1:  # one atomic batch; a single message is atomic as it is
        batch = uuid4().hex
        for number, (headers, _) in enumerate(messages, 1):
            headers[BATCH_ID] = batch
            headers[BATCH_SEQUENCE] = str(number)
        messages[-1][0][BATCH_COMMIT] = "1"
    return messages


def source_of(aggregate_name: str) -> str:
    """The ``ce-source`` of an aggregate type's events: ``/<type>``."""
    return header_text(f"/{aggregate_name}")


def name_of(aggregate_name: str, event_type: str) -> str:
    """The stored event name a ``ce-type`` (``<aggregate type>.<event name>``) holds."""
    kind = header_value(event_type)
    prefix = f"{aggregate_name}."
    return kind[len(prefix) :] if kind.startswith(prefix) else kind


def version_of(headers: Mapping[str, str]) -> int:
    """The aggregate's version after a message of either layout."""
    return int(headers[VERSION] if COUNT in headers else headers[EVENT_VERSION])


def first_version_of(headers: Mapping[str, str]) -> int:
    """The version of the first event a message holds (its own version for a marker)."""
    count = headers.get(COUNT)
    if count is None:
        return int(headers[EVENT_VERSION])
    return int(headers[VERSION]) - int(count) + 1


def previous_of(sequence: int, headers: Mapping[str, str]) -> int:
    """The sequence of the aggregate's message before this one, 0 for its first.

    A command's first message names it (the sequence it expected); the other events of a batch
    follow their predecessor directly.
    """
    previous = headers.get(EXPECTED_LAST_SUBJECT_SEQUENCE)
    return sequence - 1 if previous is None else int(previous)


def previous_command_of(sequence: int, headers: Mapping[str, str]) -> int:
    """Where a walk over an aggregate's commands, newest first, goes after this message: the
    first message of its batch (consecutive, so its batch number tells where), or the previous
    command's last message; 0 after the aggregate's first."""
    previous = headers.get(EXPECTED_LAST_SUBJECT_SEQUENCE)
    if previous is not None:
        return int(previous)
    number = headers.get(BATCH_SEQUENCE)
    return 0 if number is None else sequence - int(number) + 1


class _WireEvent(msgspec.Struct, array_like=True, frozen=True):
    id: UUID
    name: str
    timestamp: datetime
    data: bytes
    metadata: dict[str, str]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[_WireEvent])


def encode_events(events: Sequence[StoredEvent]) -> bytes:
    return _encoder.encode(
        [_WireEvent(e.id, e.name, e.timestamp, e.data, dict(e.metadata)) for e in events]
    )


def holds_events(headers: Mapping[str, str]) -> bool:
    """Whether a message of either layout holds events (a creation marker holds none)."""
    count = headers.get(COUNT)
    return EVENT_VERSION in headers if count is None else count != "0"


def decode_events(
    subject: str, sequence: int, headers: Mapping[str, str], body: bytes
) -> list[StoredEvent]:
    """The events of one stored message of either layout (none for a creation marker)."""
    stored = headers.get(COUNT)
    if stored is None:
        return [decode_event(subject, sequence, headers, body)] if EVENT_VERSION in headers else []
    count = int(stored)
    if count == 0:
        return []
    aggregate_name, aggregate_id = split_subject(subject)
    first_version = int(headers[VERSION]) - count + 1
    try:
        wire = _decoder.decode(body)
        if len(wire) != count:
            raise ValueError(f"the message holds {len(wire)} events, its header says {count}")
    except (msgspec.DecodeError, ValueError) as exc:
        # Published by hand or by other code: hand the events back flagged, not fail the read.
        return [
            StoredEvent(
                id=UNREADABLE_ID,
                aggregate_name=aggregate_name,
                aggregate_id=aggregate_id,
                version=first_version + i,
                name="",
                timestamp=UNREADABLE_TIME,
                data=body,
                position=position,
                defect=f"stored message {sequence} cannot be read: {exc}",
            )
            for i, position in enumerate(positions_of(sequence, count))
        ]
    events = [
        StoredEvent(
            id=w.id,
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            version=first_version + i,
            name=w.name,
            timestamp=w.timestamp,
            data=w.data,
            metadata=w.metadata,
            position=position,
        )
        for i, (w, position) in enumerate(zip(wire, positions_of(sequence, count), strict=True))
    ]
    if aggregate_name == DCB_AGGREGATE:  # a DCB append (see stores/nats/dcb.py)
        return [dcb_envelope(event) for event in events]
    return events


def decode_event(
    subject: str, sequence: int, headers: Mapping[str, str], body: bytes
) -> StoredEvent:
    """The event of a message of the one-per-event layout: its body and its headers."""
    aggregate_name, aggregate_id = split_subject(subject)
    position = sequence * SLOTS + SLOTS - 1
    version = 0
    try:
        version = int(headers[EVENT_VERSION])
        metadata = headers.get(METADATA)
        return StoredEvent(
            id=UUID(headers[EVENT_ID]),
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            version=version,
            name=name_of(aggregate_name, headers[TYPE]),
            timestamp=datetime.fromisoformat(headers[TIME]),
            data=body,
            metadata=decode_metadata(metadata) if metadata else {},
            position=position,
        )
    except (KeyError, ValueError, msgspec.DecodeError) as exc:
        # Published by hand or by other code: hand the event back flagged, not fail the read.
        return StoredEvent(
            id=UNREADABLE_ID,
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            version=version,
            name="",
            timestamp=UNREADABLE_TIME,
            data=body,
            position=position,
            defect=f"stored message {sequence} cannot be read: {type(exc).__name__} {exc}",
        )


class Tip(msgspec.Struct, frozen=True):
    """The newest message of one aggregate's subject: what an append must build on."""

    sequence: int
    version: int
    created: str
    origin: int

    @classmethod
    def from_headers(cls, sequence: int, headers: Mapping[str, str]) -> Tip:
        version = version_of(headers)
        origin = headers.get(ORIGIN)
        if origin is not None:
            return cls(sequence, version, headers[CREATED], int(origin))
        # The aggregate's first command, whose first sequence was unknown until stored: a
        # creation message is its own origin, and a creating batch starts at version 1.
        first = sequence if COUNT in headers else sequence - version + 1
        return cls(sequence, version, headers[CREATED], first)

    def headers_after(self, count: int) -> dict[str, str]:
        """Headers of the message that appends ``count`` events after this tip."""
        return {
            EXPECTED_LAST_SUBJECT_SEQUENCE: str(self.sequence),
            VERSION: str(self.version + count),
            COUNT: str(count),
            CREATED: self.created,
            ORIGIN: str(self.origin),
        }


class ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    """JetStream's answer to a publish: the sequence assigned, or why it was refused."""

    seq: int = 0
    count: int = 0  # the messages of an atomic batch, ``seq`` being the last one's
    error: ApiError | None = None


decode_ack = msgspec.json.Decoder(PubAck).decode

WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code when ``Nats-Expected-Last-Subject-Sequence`` does not match."""

CONFLICTS = frozenset({WRONG_LAST_SEQUENCE, 10164})
"""Every code meaning that expected sequence did not match: a replicated stream's leader answers
10164 (the same refusal, without the sequence it found) where a single server answers 10071."""

MESSAGE_TOO_LARGE = 10054
"""JetStream's error code when a message exceeds the stream's ``max_msg_size``."""


def message_size(headers: dict[str, str], body: bytes) -> int:
    """The bytes a message counts against the server's ``max_payload``: headers and body.

    The headers are sized as the client writes them (``NATS/1.0``, then ``Key: value`` lines);
    the store writes ASCII headers only, so characters count as bytes.
    """
    lines = sum(len(key) + len(value) for key, value in headers.items()) + 4 * len(headers)
    return len(b"NATS/1.0\r\n") + lines + len(b"\r\n") + len(body)
