"""Idempotency keys in a SQL store's own database (SQLite, PostgreSQL): the table, migrated as
the component ``idempotency``, and the statements on it (SQLite runs them in its batch's
transaction; PostgreSQL runs the same logic inside ``eventsignal_append_keyed``, see
:mod:`eventsignal.stores.postgres.schema`).

A key is inserted in the transaction that stores its command's events, so both commit or
neither does; its primary key refuses a second command under the same key. The same
transaction drops the aggregate's keys that retention no longer keeps: those older than its
cutoff, and those past its newest ``keep`` (keys of one aggregate are ordered by the version
their command reached, which no two share).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsignal.stores.idempotency import CommandKey, KeyRetention, RecordedCommand
from eventsignal.stores.sql.contract import Dialect

COMPONENT = "idempotency"
TABLE = "eventsignal_command_keys"


def _schema(version: str, moment: str) -> list[list[str]]:
    return [
        [
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " aggregate_name TEXT NOT NULL, aggregate_id TEXT NOT NULL, key TEXT NOT NULL,"
            f" digest TEXT NOT NULL, version {version} NOT NULL, recorded_at {moment} NOT NULL,"
            " PRIMARY KEY (aggregate_name, aggregate_id, key))",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_by_version"
            f" ON {TABLE} (aggregate_name, aggregate_id, version)",
        ]
    ]


# SQLite keeps moments as microseconds since the epoch, as its events do.
MIGRATIONS: dict[Dialect, list[list[str]]] = {
    "sqlite": _schema("INTEGER", "INTEGER"),
    "postgres": _schema("BIGINT", "TIMESTAMPTZ"),
}

INSERT = (
    f"INSERT INTO {TABLE} (aggregate_name, aggregate_id, key, digest, version, recorded_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

# Parameters: name, id, cutoff (NULL: no age limit), name, id, keep.
PRUNE = (
    f"DELETE FROM {TABLE} WHERE aggregate_name = ? AND aggregate_id = ? AND (recorded_at < ?"
    f" OR version <= (SELECT version FROM {TABLE} WHERE aggregate_name = ? AND aggregate_id = ?"
    " ORDER BY version DESC LIMIT 1 OFFSET ?))"
)

FIND = (
    f"SELECT digest, version, recorded_at FROM {TABLE}"
    " WHERE aggregate_name = ? AND aggregate_id = ? AND key = ?"
)


def insert_params(
    aggregate_name: str, aggregate_id: str, key: CommandKey, version: int, moment: Any
) -> tuple[Any, ...]:
    return (aggregate_name, aggregate_id, key.key, key.digest, version, moment)


def prune_params(
    aggregate_name: str, aggregate_id: str, retention: KeyRetention, cutoff: Any
) -> tuple[Any, ...]:
    return (aggregate_name, aggregate_id, cutoff, aggregate_name, aggregate_id, retention.keep)


def recorded(key: str, row: tuple[Any, ...], moment: datetime) -> RecordedCommand:
    digest, version, _ = row
    return RecordedCommand(key=key, digest=digest, version=int(version), recorded_at=moment)
