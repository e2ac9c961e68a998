"""Where subscriptions keep their state, and the transaction handlers write in.

A SQL store (SQLite, PostgreSQL) keeps checkpoints, parked events and read models in its own
database, so a handler's writes and the checkpoint commit together. A :class:`MemoryStore` gets a
companion in-memory SQLite database, created on first use and dropped with the store: the same
SQL then runs everywhere, and tests on the memory store exercise the durable code paths.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.base import EventStore
from eventsignal.stores.memory import MemoryStore
from eventsignal.stores.sql import Dialect, SQLTransaction


class Storage(Protocol):
    """The part of :class:`~eventsignal.stores.sql.SQLStore` subscriptions need."""

    @property
    def dialect(self) -> Dialect: ...

    def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

    async def migrate_component(
        self, component: str, migrations: Sequence[Sequence[str]]
    ) -> None: ...


class Transaction:
    """The transaction a handler taking ``(event, tx)`` writes in.

    It is the store's own :class:`~eventsignal.stores.sql.SQLTransaction` plus its ``dialect``
    (placeholders are ``?`` on SQLite, ``%s`` on PostgreSQL). The checkpoint advances in it.

    Read-model writes are staged here and sent in one statement per kind when the batch commits
    (one round trip instead of one per event); any SQL run through this object sends them first,
    so the handler's own queries see them.
    """

    __slots__ = ("_flush", "_tx", "dialect", "staged")

    def __init__(self, tx: SQLTransaction, dialect: Dialect) -> None:
        self._tx = tx
        self.dialect: Dialect = dialect
        self.staged: dict[tuple[str, str], tuple[str | None, int]] = {}
        self._flush: Callable[[Transaction], Awaitable[None]] | None = None

    @property
    def raw(self) -> SQLTransaction:
        """The store's transaction, which bypasses the staged writes."""
        return self._tx

    def on_flush(self, flush: Callable[[Transaction], Awaitable[None]]) -> None:
        self._flush = flush

    async def flush(self) -> None:
        """Send the staged writes."""
        if self.staged and self._flush is not None:
            await self._flush(self)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        if self.staged:
            await self.flush()
        return await self._tx.execute(sql, params)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if self.staged:
            await self.flush()
        await self._tx.executemany(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.staged:
            await self.flush()
        return await self._tx.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        if self.staged:
            await self.flush()
        return await self._tx.fetchone(sql, params)


class _SQLiteTransaction:
    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(sql, params).fetchone()
        return row


class MemoryCompanion:
    """Subscription state for a :class:`MemoryStore`: an in-memory SQLite database.

    Transactions are serialized by a lock, so a handler must not open a second transaction on
    the same store while it holds one.
    """

    dialect: Dialect = "sqlite"

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._lock = asyncio.Lock()
        self._versions: dict[str, int] = {}

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SQLTransaction]:
        async with self._lock:
            self._db.execute("BEGIN")
            try:
                yield _SQLiteTransaction(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]:
        return self._transaction()

    async def migrate_component(self, component: str, migrations: Sequence[Sequence[str]]) -> None:
        async with self._transaction() as tx:
            for version in range(self._versions.get(component, 0), len(migrations)):
                for statement in migrations[version]:
                    await tx.execute(statement)
        self._versions[component] = len(migrations)


_companions: weakref.WeakKeyDictionary[MemoryStore, MemoryCompanion] = weakref.WeakKeyDictionary()


def storage_for(store: EventStore) -> Storage:
    """The storage for subscription state that belongs with ``store``.

    Stores without SQL (NATS) cannot hold checkpoints: give the runner a SQL store for them.
    """
    if isinstance(store, MemoryStore):
        companion = _companions.get(store)
        if companion is None:
            companion = _companions[store] = MemoryCompanion()
        return companion
    if all(hasattr(store, a) for a in ("dialect", "transaction", "migrate_component")):
        return store  # type: ignore[return-value]
    raise ConfigurationError(
        f"{type(store).__name__} cannot keep subscription checkpoints; "
        "pass checkpoints=<a SQLiteStore or PostgresStore>"
    )
