"""Checkpoints, leases, members and parked events, in the store's own database.

One row per (subscription, partition) holds the position up to which that partition is done, the
process leasing it and until when. Every checkpoint advance is a compare-and-set on the expected
position and owner: a process that lost its lease (paused, then its partition taken over) fails
the update and rolls back its handler's writes, so even a late zombie cannot apply an event twice.

Times are Unix seconds from the processes' clocks; leases assume clocks agree to well within a
lease's length, and correctness never depends on them (the compare-and-set does not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from eventsignal.domain.errors import SignalError
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.sql import (
    Dialect,
    SQLTransaction,
    ensure_component,
    for_dialect,
    reading,
)
from eventsignal.subscriptions.transaction import Storage

COMPONENT = "subscriptions"


def _schema(document_type: str, real: str) -> list[list[str]]:
    return [
        [
            "CREATE TABLE IF NOT EXISTS eventsignal_checkpoints ("
            " subscription TEXT NOT NULL, part INTEGER NOT NULL, parts INTEGER NOT NULL,"
            " position BIGINT NOT NULL, owner TEXT,"
            f" lease_until {real} NOT NULL DEFAULT 0, updated_at {real} NOT NULL DEFAULT 0,"
            " PRIMARY KEY (subscription, part))",
            "CREATE TABLE IF NOT EXISTS eventsignal_members ("
            f" subscription TEXT NOT NULL, member TEXT NOT NULL, expires {real} NOT NULL,"
            " PRIMARY KEY (subscription, member))",
            "CREATE TABLE IF NOT EXISTS eventsignal_parked ("
            " subscription TEXT NOT NULL, event_id TEXT NOT NULL, position BIGINT NOT NULL,"
            " aggregate_name TEXT NOT NULL, aggregate_id TEXT NOT NULL,"
            " version INTEGER NOT NULL, event_name TEXT NOT NULL, error TEXT NOT NULL,"
            f" attempts INTEGER NOT NULL, parked_at {real} NOT NULL,"
            " PRIMARY KEY (subscription, event_id))",
            "CREATE TABLE IF NOT EXISTS eventsignal_documents ("
            f" model TEXT NOT NULL, key TEXT NOT NULL, document {document_type} NOT NULL,"
            " position BIGINT NOT NULL, PRIMARY KEY (model, key))",
        ]
    ]


def _quarantine(real: str) -> list[str]:
    # Events an operator set aside: every subscription passes them by (see quarantine.py).
    return [
        "CREATE TABLE IF NOT EXISTS eventsignal_quarantine ("
        " position BIGINT PRIMARY KEY, reason TEXT NOT NULL,"
        f" quarantined_at {real} NOT NULL)"
    ]


MIGRATIONS: dict[Dialect, list[list[str]]] = {
    "sqlite": [*_schema("TEXT", "REAL"), _quarantine("REAL")],
    "postgres": [*_schema("JSONB", "DOUBLE PRECISION"), _quarantine("DOUBLE PRECISION")],
}


class SQL:
    """Statements written with ``?`` placeholders, translated once per dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def __call__(self, statement: str) -> str:
        return for_dialect(statement, self.dialect)


class Lease(msgspec.Struct, frozen=True):
    """One partition's row: its checkpoint and who leases it until when."""

    part: int
    position: int
    owner: str | None
    lease_until: float


class ParkedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event a subscription gave up on, with the last error."""

    subscription: str
    event_id: UUID
    position: int
    aggregate_name: str
    aggregate_id: str
    version: int
    event_name: str
    error: str
    attempts: int
    parked_at: datetime


class Checkpoints:
    """The subscription tables of one store.

    ``idle_timeout`` (seconds) bounds, on PostgreSQL, how long one of these transactions may sit
    idle: a process paused inside one (a zombie past its lease) would otherwise keep its row
    locks and stall the members that took its partitions over. The server ends such a session;
    its late commit fails, which the checkpoint compare-and-set makes harmless anyway.
    """

    def __init__(self, storage: Storage, idle_timeout: float | None = None) -> None:
        self.storage = storage
        self.dialect: Dialect = storage.dialect
        self.sql = SQL(self.dialect)
        self._idle_ms = (
            str(max(int(idle_timeout * 1000), 1))
            if idle_timeout is not None and self.dialect == "postgres"
            else None
        )

    async def setup(self) -> None:
        """Create or upgrade the subscription tables; once per storage object in a process."""
        await ensure_component(self.storage, COMPONENT, MIGRATIONS[self.dialect])

    def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]:
        if self._idle_ms is None:
            return self.storage.transaction()
        return self._bounded_transaction(self._idle_ms)

    def reading(self) -> AbstractAsyncContextManager[SQLTransaction]:
        """A transaction for reads only (status, read models): on SQLite it never waits for
        a runner's write transaction."""
        if self._idle_ms is None:
            return reading(self.storage)
        return self._bounded_transaction(self._idle_ms)

    @asynccontextmanager
    async def _bounded_transaction(self, idle_ms: str) -> AsyncIterator[SQLTransaction]:
        async with self.storage.transaction() as tx:
            await tx.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true)", (idle_ms,)
            )
            yield tx

    # Checkpoints and leases

    async def ensure(self, tx: SQLTransaction, name: str, parts: int, position: int) -> None:
        """Create the partitions' rows at ``position`` unless they exist."""
        await tx.executemany(
            self.sql(
                "INSERT INTO eventsignal_checkpoints (subscription, part, parts, position)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (subscription, part) DO NOTHING"
            ),
            [(name, part, parts, position) for part in range(parts)],
        )
        rows = await tx.fetchall(
            self.sql("SELECT DISTINCT parts FROM eventsignal_checkpoints WHERE subscription = ?"),
            (name,),
        )
        found = sorted(int(r[0]) for r in rows)
        if found != [parts]:
            raise SignalError(
                f"subscription {name!r} is stored with {found} partitions, not {parts}; "
                "rebuild it under a new name to change its partitioning"
            )

    async def leases(self, tx: SQLTransaction, name: str) -> list[Lease]:
        rows = await tx.fetchall(
            self.sql(
                "SELECT part, position, owner, lease_until FROM eventsignal_checkpoints"
                " WHERE subscription = ? ORDER BY part"
            ),
            (name,),
        )
        return [Lease(int(r[0]), int(r[1]), r[2], float(r[3])) for r in rows]

    async def claim(
        self, tx: SQLTransaction, name: str, part: int, member: str, now: float, until: float
    ) -> int | None:
        """Lease a free or expired partition; return its checkpoint, or ``None`` if taken."""
        if self.dialect == "postgres":
            # A row locked by a transaction in flight is not free: skip it rather than wait.
            locked = await tx.fetchone(
                "SELECT part FROM eventsignal_checkpoints WHERE subscription = %s AND part = %s"
                " FOR UPDATE SKIP LOCKED",
                (name, part),
            )
            if locked is None:
                return None
        row = await tx.fetchone(
            self.sql(
                "UPDATE eventsignal_checkpoints SET owner = ?, lease_until = ?"
                " WHERE subscription = ? AND part = ?"
                " AND (owner IS NULL OR owner = ? OR lease_until < ?) RETURNING position"
            ),
            (member, until, name, part, member, now),
        )
        return None if row is None else int(row[0])

    async def renew(self, tx: SQLTransaction, name: str, member: str, until: float) -> None:
        """Extend this member's leases and announce it as alive."""
        await tx.execute(
            self.sql(
                "UPDATE eventsignal_checkpoints SET lease_until = ?"
                " WHERE subscription = ? AND owner = ?"
            ),
            (until, name, member),
        )
        await tx.execute(
            self.sql(
                "INSERT INTO eventsignal_members (subscription, member, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (subscription, member) DO UPDATE SET expires = excluded.expires"
            ),
            (name, member, until),
        )

    async def members(self, tx: SQLTransaction, name: str, now: float) -> list[str]:
        """The members alive now; long-dead ones are forgotten."""
        await tx.execute(
            self.sql("DELETE FROM eventsignal_members WHERE subscription = ? AND expires < ?"),
            (name, now - 3600),
        )
        rows = await tx.fetchall(
            self.sql(
                "SELECT member FROM eventsignal_members WHERE subscription = ? AND expires >= ?"
                " ORDER BY member"
            ),
            (name, now),
        )
        return [r[0] for r in rows]

    async def release(
        self, tx: SQLTransaction, name: str, member: str, part: int | None = None
    ) -> None:
        """Give up one partition (or all, and membership, when ``part`` is ``None``)."""
        if part is None:
            await tx.execute(
                self.sql(
                    "UPDATE eventsignal_checkpoints SET owner = NULL, lease_until = 0"
                    " WHERE subscription = ? AND owner = ?"
                ),
                (name, member),
            )
            await tx.execute(
                self.sql("DELETE FROM eventsignal_members WHERE subscription = ? AND member = ?"),
                (name, member),
            )
            return
        await tx.execute(
            self.sql(
                "UPDATE eventsignal_checkpoints SET owner = NULL, lease_until = 0"
                " WHERE subscription = ? AND part = ? AND owner = ?"
            ),
            (name, part, member),
        )

    async def advance(
        self,
        tx: SQLTransaction,
        name: str,
        part: int,
        member: str,
        expected: int,
        position: int,
        now: float,
    ) -> bool:
        """Move a partition's checkpoint if this member still holds it at ``expected``."""
        changed = await tx.execute(
            self.sql(
                "UPDATE eventsignal_checkpoints SET position = ?, updated_at = ?"
                " WHERE subscription = ? AND part = ? AND owner = ? AND position = ?"
            ),
            (position, now, name, part, member, expected),
        )
        return changed == 1

    async def reset(self, tx: SQLTransaction, name: str) -> None:
        """Send every partition back to position 0 and free it; forget parked events."""
        await tx.execute(
            self.sql(
                "UPDATE eventsignal_checkpoints SET position = 0, owner = NULL, lease_until = 0"
                " WHERE subscription = ?"
            ),
            (name,),
        )
        await tx.execute(self.sql("DELETE FROM eventsignal_parked WHERE subscription = ?"), (name,))

    async def progress(self, tx: SQLTransaction, name: str) -> int | None:
        """The position every partition has reached, or ``None`` for an unknown subscription."""
        row = await tx.fetchone(
            self.sql("SELECT MIN(position) FROM eventsignal_checkpoints WHERE subscription = ?"),
            (name,),
        )
        return None if row is None or row[0] is None else int(row[0])

    async def overview(
        self, tx: SQLTransaction, now: float
    ) -> list[tuple[str, int, int, int, int]]:
        """Per subscription: position reached, partitions, partitions leased, parked events."""
        rows = await tx.fetchall(
            self.sql(
                "SELECT c.subscription, MIN(c.position), COUNT(*),"
                " SUM(CASE WHEN c.owner IS NOT NULL AND c.lease_until >= ? THEN 1 ELSE 0 END),"
                " (SELECT COUNT(*) FROM eventsignal_parked p"
                "  WHERE p.subscription = c.subscription)"
                " FROM eventsignal_checkpoints c GROUP BY c.subscription ORDER BY c.subscription"
            ),
            (now,),
        )
        return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    # Parked events

    async def park(
        self,
        tx: SQLTransaction,
        name: str,
        event: StoredEvent,
        error: str,
        attempts: int,
        now: float,
    ) -> None:
        await tx.execute(
            self.sql(
                "INSERT INTO eventsignal_parked (subscription, event_id, position, aggregate_name,"
                " aggregate_id, version, event_name, error, attempts, parked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscription, event_id) DO UPDATE SET error = excluded.error,"
                " attempts = eventsignal_parked.attempts + excluded.attempts,"
                " parked_at = excluded.parked_at"
            ),
            (
                name,
                str(event.id),
                event.position,
                event.aggregate_name,
                event.aggregate_id,
                event.version,
                event.name,
                error,
                attempts,
                now,
            ),
        )

    async def parked(self, tx: SQLTransaction, name: str | None = None) -> list[ParkedEvent]:
        where, params = ("WHERE subscription = ?", (name,)) if name is not None else ("", ())
        rows = await tx.fetchall(
            self.sql(
                "SELECT subscription, event_id, position, aggregate_name, aggregate_id, version,"
                f" event_name, error, attempts, parked_at FROM eventsignal_parked {where}"
                " ORDER BY subscription, position"
            ),
            params,
        )
        return [_parked(r) for r in rows]

    async def unpark(self, tx: SQLTransaction, name: str, event_id: UUID) -> None:
        await tx.execute(
            self.sql("DELETE FROM eventsignal_parked WHERE subscription = ? AND event_id = ?"),
            (name, str(event_id)),
        )

    # Quarantined events

    async def quarantine(self, tx: SQLTransaction, position: int, reason: str, now: float) -> None:
        await tx.execute(
            self.sql(
                "INSERT INTO eventsignal_quarantine (position, reason, quarantined_at)"
                " VALUES (?, ?, ?) ON CONFLICT (position) DO UPDATE SET reason = excluded.reason"
            ),
            (position, reason, now),
        )

    async def quarantined(self, tx: SQLTransaction) -> dict[int, str]:
        """Quarantined positions with their reasons."""
        rows = await tx.fetchall(
            "SELECT position, reason FROM eventsignal_quarantine ORDER BY position"
        )
        return {int(r[0]): r[1] for r in rows}

    async def unquarantine(self, tx: SQLTransaction, position: int) -> bool:
        return (
            await tx.execute(
                self.sql("DELETE FROM eventsignal_quarantine WHERE position = ?"), (position,)
            )
            > 0
        )


def _parked(row: Sequence[Any]) -> ParkedEvent:
    return ParkedEvent(
        subscription=row[0],
        event_id=UUID(str(row[1])),
        position=int(row[2]),
        aggregate_name=row[3],
        aggregate_id=row[4],
        version=int(row[5]),
        event_name=row[6],
        error=row[7],
        attempts=int(row[8]),
        parked_at=datetime.fromtimestamp(float(row[9]), UTC),
    )
