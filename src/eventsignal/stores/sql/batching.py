"""Group commit: concurrent appends share one transaction.

A durable commit costs a disk flush or a network round trip; paying it once per batch instead of
once per command is what lets throughput grow with concurrency. No delay is added: the first append
is committed at once, and whatever arrives while a commit is in flight forms the next batch.
Each caller still gets its own result, so one conflicting aggregate fails only its own command.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import msgspec

from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.identity import validate_id, validate_name
from eventsignal.stores.base import StoredEvent, check_versions
from eventsignal.stores.idempotency import CommandKey, KeyRetention, check_key
from eventsignal.stores.tenancy import validate_tenant


class AppendRequest(msgspec.Struct, frozen=True):
    """One command's events, with the version its aggregate is expected to be at.

    With ``create`` the request records a new aggregate (expected version 0) and its first
    events, if any, in one step: it fails with :class:`~eventsignal.AggregateExists` if the id
    is taken, and then stores nothing. ``created_at`` backdates that record (else: now).
    With ``key`` the request records that idempotency key with its events, and drops the
    aggregate's keys that ``retention`` no longer keeps. ``tenant`` names the tenant whose
    aggregate it is (``""``: the default one); one batch may mix tenants.
    """

    aggregate_name: str
    aggregate_id: str
    expected_version: int
    events: Sequence[StoredEvent]
    create: bool = False
    created_at: datetime | None = None
    key: CommandKey | None = None
    retention: KeyRetention | None = None
    tenant: str = ""

    def keyed(self, key: CommandKey | None, retention: KeyRetention) -> AppendRequest:
        """This request, recording ``key`` (checked) with its events."""
        if key is None:
            return self
        check_key(self.aggregate_name, self.aggregate_id, key.key)
        return msgspec.structs.replace(self, key=key, retention=retention)

    @classmethod
    def creation(
        cls,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        created_at: datetime | None = None,
        tenant: str = "",
    ) -> AppendRequest:
        """A checked request to record a new aggregate with its first events, if any."""
        validate_name(aggregate_name)
        validate_id(aggregate_id)
        if tenant:
            _checked_tenant(tenant)
        check_versions(aggregate_name, aggregate_id, 0, events)
        return cls(
            aggregate_name,
            aggregate_id,
            0,
            events,
            create=True,
            created_at=created_at,
            tenant=tenant,
        )

    @classmethod
    def checked(
        cls,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        tenant: str = "",
    ) -> AppendRequest:
        """A request whose events follow ``expected_version`` one by one, or ``ValueError``."""
        if tenant:
            _checked_tenant(tenant)
        check_versions(aggregate_name, aggregate_id, expected_version, events)
        return cls(aggregate_name, aggregate_id, expected_version, events, tenant=tenant)


# Every append of a tenant names it again, and a process serves few: each name is checked once.
_valid_tenant = functools.lru_cache(maxsize=4096)(validate_tenant)


def _checked_tenant(tenant: object) -> None:
    """Refuse what cannot name a tenant (checked before the cache, which hashes it)."""
    if type(tenant) is not str:
        validate_tenant(tenant)
    _valid_tenant(tenant)


AppendOutcome = Sequence[int] | BaseException
CommitBatch = Callable[[list[AppendRequest]], Awaitable[list[AppendOutcome]]]


class GroupCommit:
    """Queues appends and hands them to ``commit_batch`` in batches, one batch at a time.

    ``commit_batch`` receives the requests in arrival order and returns, for each, either the
    positions assigned or the exception that request must raise (for example a
    :class:`~eventsignal.ConcurrencyError`). If ``commit_batch`` itself raises, every request of the
    batch fails with that error: none of them was acknowledged.
    """

    def __init__(self, commit_batch: CommitBatch, *, max_batch: int = 500) -> None:
        if max_batch < 1:
            raise ConfigurationError("max_batch must be at least 1")
        self._commit_batch = commit_batch
        self._max_batch = max_batch
        self._queue: list[tuple[AppendRequest, asyncio.Future[Sequence[int]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def append(self, request: AppendRequest) -> asyncio.Future[Sequence[int]]:
        """Queue ``request``; the future settles with its positions or its error. (A future,
        not a coroutine: one frame less to resume on every command's way back.)"""
        future: asyncio.Future[Sequence[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    outcomes = await self._commit_batch([request for request, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    settle(future, outcome)
        finally:
            self._flusher = None
            # Requests that arrived while a non-Exception error unwound us must not hang.
            if self._queue:
                self._flusher = asyncio.create_task(self._flush())

    async def close(self) -> None:
        """Wait for queued appends to be committed."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)


def settle(future: asyncio.Future[Sequence[int]], outcome: AppendOutcome) -> None:
    """Hand an append's outcome to the caller waiting on ``future``, unless it stopped waiting
    (a cancelled caller's append may still be stored)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
