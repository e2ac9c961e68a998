"""Reading stored rows whose envelope may be bad.

Rows written by older code or by hand can hold what the current code would refuse (metadata that
is not a string-to-string object, say). A store hands such a row back flagged with
:attr:`~eventsignal.stores.base.StoredEvent.defect` instead of failing the whole read, so one bad
row never stops a subscription or a listing; whoever decodes it gets an error naming the row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec

UNREADABLE_ID = UUID(int=0)  # stands in for an event id that cannot be read
UNREADABLE_TIME = datetime(1970, 1, 1, tzinfo=UTC)

_decode_metadata = msgspec.json.Decoder(dict[str, str]).decode


def decode_metadata(text: str | bytes) -> dict[str, str]:
    """Stored metadata JSON as a dict; ``msgspec.DecodeError`` if it is not string-to-string."""
    return {} if text == "{}" else _decode_metadata(text)


def read_metadata(text: str | bytes) -> tuple[dict[str, str], str | None]:
    """Stored metadata as a dict, or an empty one and what is wrong with it."""
    try:
        return decode_metadata(text), None
    except (msgspec.DecodeError, TypeError) as exc:
        return {}, f"stored metadata is not a string-to-string JSON object: {exc}"
