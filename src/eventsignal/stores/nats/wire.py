"""How :class:`~eventsignal.stores.NatsStore` lays events out in JetStream.

Pure functions and structs, no I/O, so the layout can be read (and tested) on its own.

* **Subjects.** Every aggregate has one subject, ``<stream>.<type token>.<id token>``. A token is
  the name itself when it holds only ``A-Z a-z 0-9 _ -``; anything else (dots, spaces, ``*``, ``>``,
  non-ASCII) becomes ``~`` followed by the unpadded lowercase base32 of its UTF-8 bytes. Plain
  names never contain ``~``, so decoding is unambiguous, and an id of at most 200 characters gives
  a token of at most 1281 characters.
* **Messages.** One message per command holds all its events (the server here predates atomic
  batch publish), so a command is stored atomically. The first message of a subject is its
  creation marker, holding the events the aggregate was created with (often none). Headers carry
  what is needed without decoding the body: the aggregate's version after the message, the
  number of events in it, the creation time and the stream sequence of the creation marker.
  The server keeps the ``Nats-Expected-Last-Subject-Sequence`` header too, which links every
  message to the previous one of its aggregate.
* **Positions.** The stream sequence orders messages across all aggregates. An event's position is
  ``sequence * SLOTS + slot``, where the last event of a message takes the top slot
  (``SLOTS - 1``) and earlier ones the slots just below it. Positions are therefore increasing and
  global, with gaps, and ``last_sequence * SLOTS + SLOTS - 1`` is the position of the newest event
  (or, when the newest message is an empty creation marker, a position just past every event).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from eventsignal.stores.base import StoredEvent
from eventsignal.stores.dcb import DCB_AGGREGATE, dcb_envelope
from eventsignal.stores.rows import UNREADABLE_ID, UNREADABLE_TIME

SLOTS = 100_000
"""Positions per stream message, hence the most events one command may store."""

VERSION = "Es-Version"
COUNT = "Es-Count"
CREATED = "Es-Created"
ORIGIN = "Es-Origin"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
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


def head_of(sequence: int) -> int:
    """The highest position a message at ``sequence`` may hold; 0 for an empty stream."""
    return sequence * SLOTS + SLOTS - 1 if sequence > 0 else 0


def first_sequence_after(position: int) -> int:
    """The first stream sequence that may hold an event past ``position``."""
    sequence, slot = divmod(max(position, 0), SLOTS)
    return max(sequence + 1 if slot == SLOTS - 1 else sequence, 1)


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


def decode_events(
    subject: str, sequence: int, headers: dict[str, str], body: bytes
) -> list[StoredEvent]:
    """The events of one stored message (none for a creation marker)."""
    count = int(headers.get(COUNT, "0"))
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


class Tip(msgspec.Struct, frozen=True):
    """The newest message of one aggregate's subject: what an append must build on."""

    sequence: int
    version: int
    created: str
    origin: int

    @classmethod
    def from_headers(cls, sequence: int, headers: dict[str, str]) -> Tip:
        # A creation marker is its own origin: its sequence is unknown until it is stored.
        origin = int(headers.get(ORIGIN, sequence))
        return cls(sequence, int(headers[VERSION]), headers[CREATED], origin)

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

    The headers are sized as the client writes them (``NATS/1.0``, then ``Key: value`` lines).
    """
    lines = sum(len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items())
    return len(b"NATS/1.0\r\n") + lines + len(b"\r\n") + len(body)
