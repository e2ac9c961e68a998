"""The SQL stores' keyed appends and appends in the caller's transaction, as requests.

Each store turns arguments into an :class:`~eventsignal.stores.sql.batching.AppendRequest` the
same way; only how a request is written differs (the group commit, or the caller's transaction),
which each store supplies as ``_append_keyed`` and ``_append_in``.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventsignal.stores.base import StoredEvent
from eventsignal.stores.idempotency import DEFAULT_RETENTION, CommandKey, KeyRetention
from eventsignal.stores.sql.batching import AppendRequest
from eventsignal.stores.sql.contract import SQLTransaction


class SQLKeyedAppends:
    """``append_keyed`` / ``create_keyed`` (:class:`~eventsignal.stores.idempotency
    .IdempotentStore`) and ``append_in`` / ``create_in`` (:class:`~eventsignal.stores.sql
    .SharedTransactions`) over a store's two ways of writing one request."""

    async def _append_keyed(self, request: AppendRequest) -> Sequence[int]:
        raise NotImplementedError

    async def _append_in(self, tx: SQLTransaction, request: AppendRequest) -> Sequence[int]:
        raise NotImplementedError

    async def append_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """``append``, recording ``key`` with the events, atomically."""
        request = AppendRequest.checked(aggregate_name, aggregate_id, expected_version, events)
        return await self._append_keyed(request.keyed(key, retention))

    async def create_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """``create``, recording ``key`` with the events, atomically."""
        request = AppendRequest.creation(aggregate_name, aggregate_id, events)
        return await self._append_keyed(request.keyed(key, retention))

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
        request = AppendRequest.checked(aggregate_name, aggregate_id, expected_version, events)
        return await self._append_in(tx, request.keyed(key, retention))

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
        request = AppendRequest.creation(aggregate_name, aggregate_id, events)
        return await self._append_in(tx, request.keyed(key, retention))
