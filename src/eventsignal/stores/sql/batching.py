"""Group commit: concurrent appends share one transaction.

A durable commit costs a disk flush or a network round trip; paying it once per batch instead of
once per command is what lets throughput grow with concurrency. No delay is added: the first append
is committed at once, and whatever arrives while a commit is in flight forms the next batch.
Each caller still gets its own result, so one conflicting aggregate fails only its own command.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

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
R = TypeVar("R")
T = TypeVar("T")
_SPLIT_PART = 16  # the fewest appends a part of a split batch keeps: smaller commits cost more


def _halves(waiting: int) -> int:
    """The size of the first of two parts ``waiting`` appends are committed in, or all of them
    when each part would hold fewer than ``_SPLIT_PART``."""
    return -(-waiting // 2) if waiting >= 2 * _SPLIT_PART else waiting


CommitBatch = Callable[[list[AppendRequest]], Awaitable[list[AppendOutcome]]]
_Batch = list[tuple[AppendRequest, asyncio.Future[Sequence[int]]]]


def _stream(request: AppendRequest) -> tuple[str, str, str]:
    return request.tenant, request.aggregate_name, request.aggregate_id


class GroupCommit:
    """Queues appends and hands them to ``commit_batch`` in batches, in arrival order.

    ``commit_batch`` receives the requests in arrival order and returns, for each, either the
    positions assigned or the exception that request must raise (for example a
    :class:`~eventsignal.ConcurrencyError`). If ``commit_batch`` itself raises, every request of the
    batch fails with that error: none of them was acknowledged.

    One batch is in flight at a time, unless ``pipelined`` says of each request in two batches
    that the store commits it in the order sent while another batch is in flight (one ordered
    connection does). Then a second batch is sent behind the first, and the appends waiting
    when both slots are free are split between them: the database works on one half while this
    process works on the answers to the other, instead of each waiting for the other in turn.
    A batch naming an aggregate that the batch in flight names waits for it, so that a batch
    the store retries request by request (see ``PostgresStore``) still goes first.
    """

    def __init__(
        self,
        commit_batch: CommitBatch,
        *,
        max_batch: int = 500,
        pipelined: Callable[[AppendRequest], bool] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ConfigurationError("max_batch must be at least 1")
        self._commit_batch = commit_batch
        self._max_batch = max_batch
        self._pipelined = pipelined
        self._slots = 1 if pipelined is None else 2
        self._queue: _Batch = []
        self._flusher: asyncio.Task[None] | None = None  # the task taking the next batch
        self._in_flight = 0
        self._flying: dict[int, _Batch] = {}  # the pipelined batches in flight
        self._ended: asyncio.Future[None] | None = None  # settled when a batch in flight ends

    def append(self, request: AppendRequest) -> asyncio.Future[Sequence[int]]:
        """Queue ``request``; the future settles with its positions or its error. (A future,
        not a coroutine: one frame less to resume on every command's way back.)"""
        future: asyncio.Future[Sequence[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        """Take batches off the queue and commit them. One task at a time takes (so batches
        are sent in order); one that sends a pipelined batch hands taking on and commits."""
        me = asyncio.current_task()
        try:
            while self._queue:
                free = self._slots - self._in_flight
                if free <= 0:
                    await self._batch_end()
                    continue
                batch = self._take(free)
                if self._overlaps(batch):
                    self._flying[id(batch)] = batch
                    self._flusher = None
                    if self._queue:  # the rest goes behind this batch
                        self._flusher = asyncio.create_task(self._flush())
                    await self._commit(batch)
                    return
                try:
                    while self._in_flight:
                        await self._batch_end()
                except BaseException:
                    self._queue[:0] = batch  # taken but not sent: back to the head of the line
                    raise
                await self._commit(batch)
        finally:
            if self._flusher is me:
                self._flusher = None
                # Requests that arrived while a non-Exception error unwound us must not hang.
                if self._queue:
                    self._flusher = asyncio.create_task(self._flush())

    def _take(self, free: int) -> _Batch:
        """The next batch: the queue's head, or half of it when both slots are free (see
        :func:`_halves`) and every request names another aggregate (two for one aggregate stay
        in one batch, checked in order)."""
        queue = self._queue
        size = len(queue)
        if free > 1:
            half = _halves(size)
            if half < size and self._distinct(queue) and self._overlaps(queue):
                size = half
        size = min(size, self._max_batch)
        batch = queue[:size]
        del queue[:size]
        return batch

    @staticmethod
    def _distinct(queue: _Batch) -> bool:
        return len({_stream(request) for request, _ in queue}) == len(queue)

    def _overlaps(self, batch: _Batch) -> bool:
        """Whether ``batch`` may be committed while the batches in flight are."""
        pipelined = self._pipelined
        if pipelined is None or not all(pipelined(request) for request, _ in batch):
            return False
        if not self._flying:
            return True
        taken = {_stream(request) for flying in self._flying.values() for request, _ in flying}
        return not any(_stream(request) in taken for request, _ in batch)

    async def _commit(self, batch: _Batch) -> None:
        """Commit ``batch`` and settle its futures."""
        self._in_flight += 1
        try:
            await settle_batch(batch, self._commit_batch)
        finally:
            self._in_flight -= 1
            self._flying.pop(id(batch), None)
            ended, self._ended = self._ended, None
            if ended is not None and not ended.done():
                ended.set_result(None)

    async def _batch_end(self) -> None:
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._ended)

    async def close(self) -> None:
        """Wait for queued appends to be committed."""
        while self._flusher is not None or self._in_flight:
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
            else:
                await self._batch_end()


async def settle_batch(
    batch: Sequence[tuple[R, asyncio.Future[T]]],
    run: Callable[[list[R]], Awaitable[Sequence[T | BaseException]]],
) -> None:
    """Run ``run`` on the requests of ``batch`` and hand each caller its outcome (one that is an
    exception is raised to its caller). If ``run`` fails as a whole, none of the batch was
    acknowledged: every caller gets that error, and one that is not an ``Exception`` (a
    cancellation) goes on up."""
    try:
        outcomes = await run([request for request, _ in batch])
    except BaseException as exc:
        fail_all((future for _, future in batch), exc)
        if not isinstance(exc, Exception):
            raise
        return
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        settle(future, outcome)


def fail_all(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """Fail every caller of a batch that failed as a whole, unless it stopped waiting."""
    for future in futures:
        if not future.done():
            future.set_exception(exc)


def settle(future: asyncio.Future[T], outcome: T | BaseException) -> None:
    """Hand an outcome to the caller waiting on ``future``, raising it there if it is an
    exception, unless the caller stopped waiting (a cancelled caller's append may still be
    stored)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
