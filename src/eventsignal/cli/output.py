"""How commands print: aligned tables, times, and stored event data as JSON."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from eventsignal.stores.base import StoredEvent


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as aligned columns; numbers right-aligned, the last column left free."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        parts[-1] = values[-1] if not numeric[-1] else parts[-1]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def time_text(value: datetime) -> str:
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _json_or_none(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None


def data_text(data: bytes) -> str:
    decoded = _json_or_none(data)
    if decoded is None and data != b"null":
        return f"<{len(data)} bytes, base64 {base64.b64encode(data)[:40].decode()}...>"
    return msgspec.json.encode(decoded).decode()


def json_record(event: StoredEvent) -> dict[str, Any]:
    record: dict[str, Any] = {
        "aggregate_name": event.aggregate_name,
        "aggregate_id": event.aggregate_id,
        "version": event.version,
        "position": event.position,
        "id": str(event.id),
        "name": event.name,
        "timestamp": event.timestamp.isoformat(),
        "metadata": dict(event.metadata),
    }
    decoded = _json_or_none(event.data)
    if decoded is None and event.data != b"null":
        record["data_base64"] = base64.b64encode(event.data).decode()
    else:
        record["data"] = decoded
    if event.defect is not None:
        record["defect"] = event.defect
    return record
