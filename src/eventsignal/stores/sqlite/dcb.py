"""The DCB view of a :class:`SQLiteStore`.

An append with a condition is one request of the writer thread's group commit: inside the batch's
``BEGIN IMMEDIATE`` transaction, which holds the file's only write lock, its condition is checked
by one query against everything committed (and against the requests before it in the batch),
then its events and tags are written, all in a savepoint of its own. No lock is added, and two
processes on one file serialise on SQLite's, so conflicting writers never both commit.

A DCB event's position is chosen, not assigned: under the write lock the next ``AUTOINCREMENT``
value is known, and the event's version repeats it (see :mod:`eventsignal.stores.dcb`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from eventsignal.domain.dcb import AppendCondition, DcbEvent, Query, SequencedEvent
from eventsignal.domain.errors import AppendConditionFailed
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.dcb import (
    TAGS_KEY,
    check_limit,
    checked_condition,
    checked_events,
    to_stored,
)
from eventsignal.stores.rows import read_metadata
from eventsignal.stores.sql.contract import ensure_component
from eventsignal.stores.sql.dcb import COMPONENT, READ_COLUMNS, selection, sequenced_row

if TYPE_CHECKING:
    from eventsignal.stores.sqlite.store import SQLiteStore

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE eventsignal_tags (
            tag TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (tag, position)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX eventsignal_events_by_name ON eventsignal_events (name, position)",
    ),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NEXT = "SELECT seq FROM sqlite_sequence WHERE name = 'eventsignal_events'"
_INSERT = (
    "INSERT INTO eventsignal_events (position, event_id, aggregate_name, aggregate_id, version, "
    "name, timestamp, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TAG = "INSERT INTO eventsignal_tags (tag, position) VALUES (?, ?)"
_encode_json = msgspec.json.Encoder().encode


class DcbWrite:
    """One DCB append, as a request of the writer thread's group commit."""

    __slots__ = ("condition", "events")

    def __init__(self, events: list[StoredEvent], condition: AppendCondition | None) -> None:
        self.events = events
        self.condition = condition

    def write(self, connection: sqlite3.Connection) -> range:
        """Check the condition and store the events, inside the open transaction."""
        condition = self.condition
        execute = connection.execute
        if condition is not None:
            params: list[Any] = []
            where = selection(condition.fail_if_events_match, condition.after, _recorder(params))
            row = execute(
                f"SELECT e.position FROM eventsignal_events AS e WHERE {where} LIMIT 1", params
            ).fetchone()
            if row is not None:
                raise AppendConditionFailed(condition, row[0])
        last = execute(_NEXT).fetchone()
        first = (last[0] if last else 0) + 1
        rows: list[tuple[Any, ...]] = []
        tags: list[tuple[str, int]] = []
        for position, event in enumerate(self.events, start=first):
            metadata = event.metadata
            rows.append(
                (
                    position,
                    event.id.bytes,
                    event.aggregate_name,
                    event.aggregate_id,
                    position,
                    event.name,
                    (event.timestamp - _EPOCH) // _MICROSECOND,
                    event.data,
                    _encode_json(metadata).decode() if metadata else "{}",
                )
            )
            if TAGS_KEY in metadata:
                tags.extend((tag, position) for tag in msgspec.json.decode(metadata[TAGS_KEY]))
        connection.executemany(_INSERT, rows)
        if tags:
            connection.executemany(_TAG, tags)
        return range(first, first + len(rows))


class SQLiteDcb:
    """Reads and appends by query over the log of one :class:`SQLiteStore`."""

    __slots__ = ("_store",)

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def _ready(self) -> None:
        await ensure_component(self._store, COMPONENT, MIGRATIONS)

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        check_limit(limit)
        await self._ready()
        params: list[Any] = []
        where = selection(query, after, _recorder(params))
        sql = f"SELECT {READ_COLUMNS}, e.metadata FROM eventsignal_events AS e WHERE {where}"
        sql += " ORDER BY e.position"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return await self._store._read(partial(_read, sql, params))

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int:
        batch = checked_events(events)
        condition = checked_condition(condition)
        now = datetime.now(UTC)
        write = DcbWrite([to_stored(event, 0, now) for event in batch], condition)
        await self._ready()
        writer = self._store._writer
        if writer is None:
            raise self._store._not_open()
        positions = await writer.append(write)
        return positions[-1]


def _recorder(params: list[Any]) -> Any:
    def param(value: Any) -> str:
        params.append(value)
        return "?"

    return param


def _read(sql: str, params: list[Any], connection: sqlite3.Connection) -> list[SequencedEvent]:
    return [
        sequenced_row(position, name, aggregate_id, type_, data, read_metadata(metadata)[0])
        for position, name, aggregate_id, type_, data, metadata in connection.execute(
            sql, params
        ).fetchall()
    ]
