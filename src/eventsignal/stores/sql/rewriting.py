"""Payload rewrites (:class:`~eventsignal.stores.rewriting.PayloadRewrite`) in a SQL store.

One short transaction per call: ``UPDATE ... FROM`` a list of changes, each matched on the
position and the payload expected, in position order (two runs at once lock rows in the same
order and cannot deadlock). No lock that appends take is needed: appends only insert rows,
and nothing but the payload of existing rows changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from eventsignal.stores.lifecycle import ARCHIVE_TABLE
from eventsignal.stores.rewriting import PayloadChange, StoredPayload
from eventsignal.stores.sql.contract import Dialect, SQLTransaction, for_dialect

# One statement per chunk of changes: a page costs the writer a few statements, not hundreds.
# (A VALUES list names its columns column1, column2, ... in both databases; a statement that
# starts with UPDATE, not WITH, is one whose changed rows sqlite3 counts.)
_REWRITE = (
    "UPDATE {table} SET data = changes.column3 FROM (VALUES {rows}) AS changes "
    "WHERE {table}.position = changes.column1 AND {table}.data = changes.column2{own}"
)
# Rewrites reach the default tenant's events alone, as the reads that find them do (other
# tenants' events are not rewritten yet); cold storage holds the default tenant's only.
_OWN = {"eventsignal_events": " AND (eventsignal_events.tenant = '') IS TRUE", ARCHIVE_TABLE: ""}
# PostgreSQL types the VALUES list from its parameters: say what they are.
_ROW = {"sqlite": "(?, ?, ?)", "postgres": "(?::bigint, ?::bytea, ?::bytea)"}
_CHUNK = 250  # rows per statement, well under either database's limit on parameters
_ARCHIVED = (
    f"SELECT position, aggregate_name, aggregate_id, version, name, data FROM {ARCHIVE_TABLE}"
    " WHERE position > ? ORDER BY position LIMIT ?"
)
# Cold storage exists once the lifecycle component was migrated.
_HAS_ARCHIVE = "SELECT version FROM eventsignal_schema WHERE component = 'lifecycle'"


class SQLPayloadRewrite:
    """The :class:`~eventsignal.stores.rewriting.PayloadRewrite` method of a SQL store."""

    if TYPE_CHECKING:
        dialect: Dialect

        def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

        def read_transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

    async def rewrite_payloads(
        self, changes: Sequence[PayloadChange], *, archived: bool = False
    ) -> int:
        if not changes:
            return 0
        table = ARCHIVE_TABLE if archived else "eventsignal_events"
        ordered = sorted(changes, key=_position)
        done = 0
        async with self.transaction() as tx:
            for start in range(0, len(ordered), _CHUNK):
                chunk = ordered[start : start + _CHUNK]
                rows = ", ".join([_ROW[self.dialect]] * len(chunk))
                statement = for_dialect(
                    _REWRITE.format(rows=rows, table=table, own=_OWN[table]), self.dialect
                )
                params = [p for c in chunk for p in (c.position, c.old, c.new)]
                done += await tx.execute(statement, params)
        return done

    async def archived_payloads(self, after_position: int, limit: int) -> Sequence[StoredPayload]:
        async with self.read_transaction() as tx:
            if await tx.fetchone(_HAS_ARCHIVE) is None:
                return []
            rows = await tx.fetchall(for_dialect(_ARCHIVED, self.dialect), (after_position, limit))
        return [
            StoredPayload(
                position=int(position),
                aggregate_name=name,
                aggregate_id=aggregate_id,
                version=int(version),
                name=event_name,
                data=bytes(data),
            )
            for position, name, aggregate_id, version, event_name, data in rows
        ]


def _position(change: PayloadChange) -> int:
    return change.position
