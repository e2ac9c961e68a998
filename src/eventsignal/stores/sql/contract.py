"""What the SQL stores (SQLite, PostgreSQL) offer beyond :class:`EventStore`.

Projections and subscriptions that must change their own tables and their checkpoint in one
transaction use :meth:`SQLStore.transaction`. Parameter placeholders are the driver's own:
``?`` for SQLite, ``%s`` for PostgreSQL; :attr:`SQLStore.dialect` says which.

Schema versions are kept per component in ``eventsignal_schema(component TEXT PRIMARY KEY,
version INTEGER NOT NULL)``: the store's own tables are component ``"events"``; other parts of
the library (subscriptions, snapshots, read models) migrate their own components.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, runtime_checkable

from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.idempotency import DEFAULT_RETENTION, CommandKey, KeyRetention

Dialect = Literal["sqlite", "postgres"]


class SQLTransaction(Protocol):
    """One open database transaction; committed when its ``async with`` block ends cleanly."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...


@runtime_checkable
class SQLStore(EventStore, Protocol):
    """An event store on a SQL database."""

    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

    def read_transaction(self) -> AbstractAsyncContextManager[SQLTransaction]:
        """A transaction for reads alone; on SQLite it never waits for the writer."""
        ...

    async def migrate(self) -> None: ...

    async def migrate_component(self, component: str, migrations: Sequence[Sequence[str]]) -> None:
        """Bring ``component`` up to ``len(migrations)``; ``migrations[i]`` holds the statements
        that take it from version ``i`` to ``i + 1``. Idempotent and safe to run concurrently."""
        ...


@runtime_checkable
class SharedTransactions(Protocol):
    """Appends inside a transaction the caller holds, so the application's own rows and a
    command's events commit together, or not at all.

    ``append_in`` and ``create_in`` behave as ``append_keyed``/``create_keyed`` (or ``append``/
    ``create`` without a ``key``) but run in ``tx``, a transaction of :meth:`transaction`, not in
    the group commit: the events are durable once that transaction commits. Their failures (a
    version conflict, a used id or key) are raised; the caller's block then rolls everything back.
    """

    def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

    async def append_in(
        self,
        tx: SQLTransaction,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        *,
        key: CommandKey | None = None,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """Append a command's events (and its key) in the caller's transaction ``tx``."""
        ...

    async def create_in(
        self,
        tx: SQLTransaction,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        *,
        key: CommandKey | None = None,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """Record a new aggregate (and its key) in the caller's transaction ``tx``."""
        ...


class Migratable(Protocol):
    async def migrate_component(
        self, component: str, migrations: Sequence[Sequence[str]]
    ) -> None: ...


@functools.lru_cache(maxsize=1024)
def for_dialect(statement: str, dialect: Dialect) -> str:
    """A statement written with ``?`` placeholders, in the dialect's driver style."""
    return statement if dialect == "sqlite" else statement.replace("?", "%s")


async def ensure_component(
    storage: Migratable, component: str, migrations: Sequence[Sequence[str]]
) -> None:
    """Migrate ``component`` once per store object.

    Migrations are idempotent, so running them again is only a waste: the store remembers which
    components it already brought up to date (one that cannot hold the note migrates every time).
    """
    done: set[str] | None = getattr(storage, "_components_migrated", None)
    if done is None:
        done = set()
        with contextlib.suppress(AttributeError):
            storage._components_migrated = done  # type: ignore[attr-defined]
    if component not in done:
        await storage.migrate_component(component, migrations)
        done.add(component)
