"""The transaction a handler taking ``(event, tx)`` writes in, and where its state lives.

Subscription state (checkpoints, parked events, read models) is kept by the store itself, through
the contract in :mod:`eventsignal.stores.subscription_state`: memory, SQLite and PostgreSQL keep
it. A NATS store does not: give the runner ``checkpoints=`` a store that does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.base import EventStore
from eventsignal.stores.sql import Dialect, SQLTransaction
from eventsignal.stores.subscription_state import (
    StoredDocument,
    SubscriptionState,
    SubscriptionStore,
)


def state_store_for(store: EventStore, checkpoints: SubscriptionStore | None = None) -> Any:
    """The store that keeps the subscription state for ``store``: ``checkpoints`` if given,
    else ``store`` itself, which must be able to."""
    if checkpoints is not None:
        return checkpoints
    if isinstance(store, SubscriptionStore):
        return store
    raise ConfigurationError(
        f"{type(store).__name__} cannot keep subscription checkpoints; "
        "pass checkpoints=<a SQLiteStore, PostgresStore or MemoryStore>"
    )


class Transaction:
    """The transaction a handler taking ``(event, tx)`` writes in; the checkpoint advances in it.

    Read-model writes (:class:`~eventsignal.subscriptions.ReadModel`) are staged here and stored
    together when the batch commits; they work on every store. On a SQL store the handler may
    also run its own SQL (``execute``, ``fetchall``...) with the store's placeholders (``?`` on
    SQLite, ``%s`` on PostgreSQL, see :attr:`dialect`); staged writes are sent first, so its
    queries see them.
    """

    __slots__ = ("staged", "state")

    def __init__(self, state: SubscriptionState) -> None:
        self.state = state
        self.staged: dict[tuple[str, str], StoredDocument | None] = {}

    @property
    def dialect(self) -> Dialect | None:
        """``"sqlite"`` or ``"postgres"`` on a SQL store, else ``None``."""
        dialect: Dialect | None = getattr(self.state, "dialect", None)
        return dialect

    @property
    def raw(self) -> SQLTransaction:
        """The store's own SQL transaction, which bypasses the staged writes."""
        sql = self.state.sql
        if sql is None:
            raise ConfigurationError(
                "SQL in a handler's transaction needs a SQL store (SQLiteStore or "
                "PostgresStore); ReadModel documents work on every store"
            )
        return sql  # type: ignore[no-any-return]

    async def flush(self) -> None:
        """Store the staged read-model writes."""
        if not self.staged:
            return
        staged, self.staged = self.staged, {}
        puts = [(key[0], doc) for key, doc in staged.items() if doc is not None]
        deletes = [key for key, doc in staged.items() if doc is None]
        if puts:
            await self.state.put_documents(puts)
        if deletes:
            await self.state.delete_documents(deletes)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one SQL statement in the transaction (SQL stores only); return the rows changed."""
        raw = self.raw
        await self.flush()
        return await raw.execute(sql, params)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one SQL statement once per set of ``params`` in the transaction."""
        raw = self.raw
        await self.flush()
        await raw.executemany(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a SQL query run in the transaction."""
        raw = self.raw
        await self.flush()
        return await raw.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a SQL query run in the transaction, or ``None``."""
        raw = self.raw
        await self.flush()
        return await raw.fetchone(sql, params)
