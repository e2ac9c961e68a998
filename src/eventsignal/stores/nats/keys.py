"""Idempotency keys on JetStream: headers of the message that stores a command's events.

The key travels in the same message as the events, so one publish stores both or neither. A
stream is never pruned of a key, so retention is applied when looking one up: a lookup walks the
aggregate's messages newest first and stops after ``keep`` keyed messages, or at the first one
older than ``max_age``. The key is base64url-encoded (header values are trimmed and must be
ASCII-safe); its digest and moment are plain text.
"""

from __future__ import annotations

import base64
from datetime import datetime

from eventsignal.stores.idempotency import CommandKey, RecordedCommand

KEY = "Es-Key"
KEY_DIGEST = "Es-Key-Digest"
KEY_TIME = "Es-Key-Time"


def key_headers(key: CommandKey) -> dict[str, str]:
    """The headers that record ``key`` on a command's message."""
    return {
        KEY: base64.urlsafe_b64encode(key.key.encode()).decode(),
        KEY_DIGEST: key.digest,
        KEY_TIME: key.recorded_at.isoformat(),
    }


def recorded_key(headers: dict[str, str], version: int) -> RecordedCommand | None:
    """The key a message's headers record, or ``None`` for a message without one."""
    encoded = headers.get(KEY)
    if encoded is None:
        return None
    return RecordedCommand(
        key=base64.urlsafe_b64decode(encoded.encode()).decode(),
        digest=headers.get(KEY_DIGEST, ""),
        version=version,
        recorded_at=datetime.fromisoformat(headers[KEY_TIME]),
    )
