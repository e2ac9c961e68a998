"""Subscription state in a SQL store's own database (SQLite, PostgreSQL).

Tables: ``eventsignal_checkpoints`` (one row per subscription and partition: the position it is
done up to, who leases it until when), ``eventsignal_members``, ``eventsignal_parked``,
``eventsignal_quarantine`` and ``eventsignal_documents`` (read models), migrated as the component
``subscriptions``. Being in the same database as the events, a handler's own SQL and the
checkpoint commit together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.sql.contract import (
    Dialect,
    SQLTransaction,
    ensure_component,
    for_dialect,
)
from eventsignal.stores.subscription_state import (
    Lease,
    ParkedEvent,
    StoredDocument,
    SubscriptionProgress,
    SubscriptionRow,
)

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


def _q(dialect: Dialect, statement: str) -> str:
    return for_dialect(statement, dialect)


class SQLSubscriptionState:
    """A :class:`~eventsignal.stores.subscription_state.SubscriptionState` on one SQL
    transaction of the store."""

    __slots__ = ("_tx", "_writable", "dialect", "idle_limit")

    def __init__(
        self,
        tx: SQLTransaction,
        dialect: Dialect,
        idle_limit: float | None,
        *,
        writable: bool = True,
    ) -> None:
        self._tx = tx
        self._writable = writable
        self.dialect: Dialect = dialect
        self.idle_limit = idle_limit

    @property
    def sql(self) -> SQLTransaction:
        tx = self._tx
        return _Begun(tx) if isinstance(tx, _LazyTransaction) else tx

    # Checkpoints and leases

    async def ensure(self, name: str, parts: int, position: int) -> None:
        """Create the partitions' rows at ``position`` unless they exist."""
        # Checked before writing, so that a refusal leaves nothing for the caller to commit.
        found = await self._partitions(name)
        if found and found != [parts]:
            raise _other_partitioning(name, parts, found)
        await self._tx.executemany(
            _q(
                self.dialect,
                "INSERT INTO eventsignal_checkpoints (subscription, part, parts, position)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (subscription, part) DO NOTHING",
            ),
            [(name, part, parts, position) for part in range(parts)],
        )
        # And after: a concurrent ensure with another count may have created them meanwhile.
        found = await self._partitions(name)
        if found != [parts]:
            raise _other_partitioning(name, parts, found)

    async def _partitions(self, name: str) -> list[int]:
        rows = await self._tx.fetchall(
            _q(
                self.dialect,
                "SELECT DISTINCT parts FROM eventsignal_checkpoints WHERE subscription = ?",
            ),
            (name,),
        )
        return sorted(int(r[0]) for r in rows)

    async def leases(self, name: str) -> list[Lease]:
        rows = await self._tx.fetchall(
            _q(
                self.dialect,
                "SELECT part, position, owner, lease_until FROM eventsignal_checkpoints"
                " WHERE subscription = ? ORDER BY part",
            ),
            (name,),
        )
        return [Lease(int(r[0]), int(r[1]), r[2], float(r[3])) for r in rows]

    async def claim(
        self, name: str, part: int, member: str, now: float, until: float
    ) -> int | None:
        """Lease a free or expired partition; return its checkpoint, or ``None`` if taken."""
        if self.dialect == "postgres":
            # A row locked by a transaction in flight is not free: skip it rather than wait.
            locked = await self._tx.fetchone(
                "SELECT part FROM eventsignal_checkpoints WHERE subscription = %s AND part = %s"
                " FOR UPDATE SKIP LOCKED",
                (name, part),
            )
            if locked is None:
                return None
        row = await self._tx.fetchone(
            _q(
                self.dialect,
                "UPDATE eventsignal_checkpoints SET owner = ?, lease_until = ?"
                " WHERE subscription = ? AND part = ?"
                " AND (owner IS NULL OR owner = ? OR lease_until < ?) RETURNING position",
            ),
            (member, until, name, part, member, now),
        )
        return None if row is None else int(row[0])

    async def renew(self, name: str, member: str, until: float) -> None:
        """Extend this member's leases and announce it as alive."""
        await self._tx.execute(
            _q(
                self.dialect,
                "UPDATE eventsignal_checkpoints SET lease_until = ?"
                " WHERE subscription = ? AND owner = ?",
            ),
            (until, name, member),
        )
        await self._tx.execute(
            _q(
                self.dialect,
                "INSERT INTO eventsignal_members (subscription, member, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (subscription, member) DO UPDATE SET expires = excluded.expires",
            ),
            (name, member, until),
        )

    async def members(self, name: str, now: float) -> list[str]:
        """The members alive now; long-dead ones are forgotten (by a transaction, not a read)."""
        if self._writable:
            await self._tx.execute(
                _q(
                    self.dialect,
                    "DELETE FROM eventsignal_members WHERE subscription = ? AND expires < ?",
                ),
                (name, now - 3600),
            )
        rows = await self._tx.fetchall(
            _q(
                self.dialect,
                "SELECT member FROM eventsignal_members WHERE subscription = ? AND expires >= ?"
                " ORDER BY member",
            ),
            (name, now),
        )
        return [r[0] for r in rows]

    async def release(self, name: str, member: str, part: int | None = None) -> None:
        """Give up one partition (or all, and membership, when ``part`` is ``None``)."""
        if part is None:
            await self._tx.execute(
                _q(
                    self.dialect,
                    "UPDATE eventsignal_checkpoints SET owner = NULL, lease_until = 0"
                    " WHERE subscription = ? AND owner = ?",
                ),
                (name, member),
            )
            await self._tx.execute(
                _q(
                    self.dialect,
                    "DELETE FROM eventsignal_members WHERE subscription = ? AND member = ?",
                ),
                (name, member),
            )
            return
        await self._tx.execute(
            _q(
                self.dialect,
                "UPDATE eventsignal_checkpoints SET owner = NULL, lease_until = 0"
                " WHERE subscription = ? AND part = ? AND owner = ?",
            ),
            (name, part, member),
        )

    async def advance(
        self,
        name: str,
        part: int,
        member: str,
        expected: int,
        position: int,
        now: float,
    ) -> bool:
        """Move a partition's checkpoint if this member still holds it at ``expected``."""
        changed = await self._tx.execute(
            _q(
                self.dialect,
                "UPDATE eventsignal_checkpoints SET position = ?, updated_at = ?"
                " WHERE subscription = ? AND part = ? AND owner = ? AND position = ?",
            ),
            (position, now, name, part, member, expected),
        )
        return changed == 1

    async def reset(self, name: str) -> None:
        """Send every partition back to position 0 and free it; forget parked events."""
        await self._tx.execute(
            _q(
                self.dialect,
                "UPDATE eventsignal_checkpoints SET position = 0, owner = NULL, lease_until = 0"
                " WHERE subscription = ?",
            ),
            (name,),
        )
        await self._tx.execute(
            _q(self.dialect, "DELETE FROM eventsignal_parked WHERE subscription = ?"), (name,)
        )

    async def progress(self, name: str) -> int | None:
        """The position every partition has reached, or ``None`` for an unknown subscription."""
        row = await self._tx.fetchone(
            _q(
                self.dialect,
                "SELECT MIN(position) FROM eventsignal_checkpoints WHERE subscription = ?",
            ),
            (name,),
        )
        return None if row is None or row[0] is None else int(row[0])

    async def overview(self, now: float) -> list[SubscriptionRow]:
        """Per subscription: position reached, partitions, partitions leased, parked events."""
        rows = await self._tx.fetchall(
            _q(
                self.dialect,
                "SELECT c.subscription, MIN(c.position), COUNT(*),"
                " SUM(CASE WHEN c.owner IS NOT NULL AND c.lease_until >= ? THEN 1 ELSE 0 END),"
                " (SELECT COUNT(*) FROM eventsignal_parked p"
                "  WHERE p.subscription = c.subscription)"
                " FROM eventsignal_checkpoints c GROUP BY c.subscription ORDER BY c.subscription",
            ),
            (now,),
        )
        return [SubscriptionRow(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    # Parked events

    async def park(
        self,
        name: str,
        event: StoredEvent,
        error: str,
        attempts: int,
        now: float,
    ) -> None:
        await self._tx.execute(
            _q(
                self.dialect,
                "INSERT INTO eventsignal_parked (subscription, event_id, position, aggregate_name,"
                " aggregate_id, version, event_name, error, attempts, parked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (subscription, event_id) DO UPDATE SET error = excluded.error,"
                " attempts = eventsignal_parked.attempts + excluded.attempts,"
                " parked_at = excluded.parked_at",
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

    async def parked(self, name: str | None = None) -> list[ParkedEvent]:
        where, params = ("WHERE subscription = ?", (name,)) if name is not None else ("", ())
        rows = await self._tx.fetchall(
            _q(
                self.dialect,
                "SELECT subscription, event_id, position, aggregate_name, aggregate_id, version,"
                f" event_name, error, attempts, parked_at FROM eventsignal_parked {where}"
                " ORDER BY subscription, position",
            ),
            params,
        )
        return [_parked(r) for r in rows]

    async def unpark(self, name: str, event_id: UUID) -> None:
        await self._tx.execute(
            _q(
                self.dialect,
                "DELETE FROM eventsignal_parked WHERE subscription = ? AND event_id = ?",
            ),
            (name, str(event_id)),
        )

    # Quarantined events

    async def quarantine(self, position: int, reason: str, now: float) -> None:
        await self._tx.execute(
            _q(
                self.dialect,
                "INSERT INTO eventsignal_quarantine (position, reason, quarantined_at)"
                " VALUES (?, ?, ?) ON CONFLICT (position) DO UPDATE SET reason = excluded.reason",
            ),
            (position, reason, now),
        )

    async def quarantined(self) -> dict[int, str]:
        """Quarantined positions with their reasons."""
        rows = await self._tx.fetchall(
            "SELECT position, reason FROM eventsignal_quarantine ORDER BY position"
        )
        return {int(r[0]): r[1] for r in rows}

    async def unquarantine(self, position: int) -> bool:
        return (
            await self._tx.execute(
                _q(self.dialect, "DELETE FROM eventsignal_quarantine WHERE position = ?"),
                (position,),
            )
            > 0
        )

    # Read-model documents

    async def document(self, model: str, key: str) -> StoredDocument | None:
        row = await self._tx.fetchone(
            _q(
                self.dialect,
                f"SELECT {self._text}, position FROM eventsignal_documents"
                " WHERE model = ? AND key = ?",
            ),
            (model, key),
        )
        return None if row is None else StoredDocument(key, _bytes(row[0]), int(row[1]))

    async def documents(self, model: str) -> list[StoredDocument]:
        rows = await self._tx.fetchall(
            _q(
                self.dialect,
                f"SELECT key, {self._text}, position FROM eventsignal_documents"
                " WHERE model = ? ORDER BY key",
            ),
            (model,),
        )
        return [StoredDocument(r[0], _bytes(r[1]), int(r[2])) for r in rows]

    async def document_models(self) -> list[str]:
        rows = await self._tx.fetchall(
            "SELECT DISTINCT model FROM eventsignal_documents ORDER BY model"
        )
        return [r[0] for r in rows]

    async def put_documents(self, model_rows: Iterable[tuple[str, StoredDocument]]) -> None:
        rows = [(m, d.key, d.data.decode(), d.position) for m, d in model_rows]
        if rows:
            param = "?::jsonb" if self.dialect == "postgres" else "?"
            await self._tx.executemany(
                _q(
                    self.dialect,
                    "INSERT INTO eventsignal_documents (model, key, document, position)"
                    f" VALUES (?, ?, {param}, ?) ON CONFLICT (model, key) DO UPDATE"
                    " SET document = excluded.document, position = excluded.position",
                ),
                rows,
            )

    async def delete_documents(self, keys: Iterable[tuple[str, str]]) -> None:
        rows = list(keys)
        if rows:
            await self._tx.executemany(
                _q(self.dialect, "DELETE FROM eventsignal_documents WHERE model = ? AND key = ?"),
                rows,
            )

    async def clear_documents(self, model: str) -> None:
        await self._tx.execute(
            _q(self.dialect, "DELETE FROM eventsignal_documents WHERE model = ?"), (model,)
        )

    @property
    def _text(self) -> str:
        return "document::text" if self.dialect == "postgres" else "document"


def _other_partitioning(name: str, parts: int, found: list[int]) -> ConfigurationError:
    return ConfigurationError(
        f"subscription {name!r} is stored with {found} partitions, not {parts}; "
        "rebuild it under a new name to change its partitioning"
    )


def _bytes(document: str | bytes) -> bytes:
    return document.encode() if isinstance(document, str) else document


class SQLSubscriptions:
    """The :class:`~eventsignal.stores.subscription_state.SubscriptionStore` half of a SQL
    store, mixed into :class:`~eventsignal.stores.SQLiteStore` and
    :class:`~eventsignal.stores.PostgresStore`.

    On PostgreSQL, ``idle_limit`` becomes the transaction's
    ``idle_in_transaction_session_timeout``: a process paused inside one (a zombie past its
    lease) would otherwise keep its row locks and stall the members that took its partitions
    over; the server ends such a session, and the compare-and-set makes its late commit harmless.
    """

    dialect: Dialect
    _progress: SubscriptionProgress | None = None

    def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]:
        raise NotImplementedError

    def read_transaction(self) -> AbstractAsyncContextManager[SQLTransaction]:
        """A transaction for reads alone; stores with a separate read path override it."""
        return self.transaction()

    @property
    def subscription_progress(self) -> SubscriptionProgress:
        if self._progress is None:
            self._progress = SubscriptionProgress()
        return self._progress

    async def setup_subscriptions(self) -> None:
        store: Any = self
        await ensure_component(store, COMPONENT, MIGRATIONS[self.dialect])

    def subscription_transaction(
        self, *, idle_limit: float | None = None
    ) -> AbstractAsyncContextManager[SQLSubscriptionState]:
        limit = idle_limit if self.dialect == "postgres" else None
        return self._lazy_state(limit)

    def subscription_reads(self) -> AbstractAsyncContextManager[SQLSubscriptionState]:
        return self._read_state()

    @asynccontextmanager
    async def _lazy_state(self, idle_limit: float | None) -> AsyncIterator[SQLSubscriptionState]:
        lazy = _LazyTransaction(self, idle_limit)
        async with lazy.stack:  # commits the write transaction, if one began; else nothing
            yield SQLSubscriptionState(lazy, self.dialect, idle_limit)

    @asynccontextmanager
    async def _read_state(self) -> AsyncIterator[SQLSubscriptionState]:
        async with self.read_transaction() as tx:
            yield SQLSubscriptionState(tx, self.dialect, None, writable=False)


class _LazyTransaction:
    """A subscription transaction that begins the store's write transaction at its first write.

    Until then its reads take the store's read path, so a handler that reads and stages
    read-model documents holds no write lock (on SQLite, the file's only one) across its awaits:
    its writes, the checkpoint's compare-and-set among them, go out in one short transaction at
    the end. The handler's own SQL (:attr:`SQLSubscriptionState.sql`) begins it at once, and
    then holds it until the batch commits.
    """

    __slots__ = ("_idle_limit", "_store", "_tx", "stack")

    def __init__(self, store: SQLSubscriptions, idle_limit: float | None) -> None:
        self._store = store
        self._idle_limit = idle_limit
        self._tx: SQLTransaction | None = None
        self.stack = AsyncExitStack()

    async def begin(self) -> SQLTransaction:
        if self._tx is None:
            tx = await self.stack.enter_async_context(self._store.transaction())
            if self._idle_limit is not None:
                await tx.execute(
                    "SELECT set_config('idle_in_transaction_session_timeout', %s, true)",
                    (str(max(int(self._idle_limit * 1000), 1)),),
                )
            self._tx = tx
        return self._tx

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await (await self.begin()).execute(sql, params)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        await (await self.begin()).executemany(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._tx is None and _reads_only(sql):
            async with self._store.read_transaction() as tx:
                return await tx.fetchall(sql, params)
        return await (await self.begin()).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        if self._tx is None and _reads_only(sql):
            async with self._store.read_transaction() as tx:
                return await tx.fetchone(sql, params)
        return await (await self.begin()).fetchone(sql, params)


class _Begun:
    """The handler's view of a lazy transaction: every statement runs inside the write
    transaction, begun at the first one."""

    __slots__ = ("_lazy",)

    def __init__(self, lazy: _LazyTransaction) -> None:
        self._lazy = lazy

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await (await self._lazy.begin()).execute(sql, params)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        await (await self._lazy.begin()).executemany(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await (await self._lazy.begin()).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return await (await self._lazy.begin()).fetchone(sql, params)


def _reads_only(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT" and "FOR UPDATE" not in sql.upper()


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
