"""Group lookup: concurrent reads of idempotency keys share one query.

Every keyed command reads its key before it runs, a round trip that group commit cannot share.
Under concurrency those reads queue here and go out together, the way appends do: the first at
once, and whatever arrives while a query is in flight as the next one. Each caller still gets
its own answer, and a failed query fails the callers it carried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from eventsignal.stores.sql.batching import settle_batch

Q = TypeVar("Q")
A = TypeVar("A")


class GroupLookup(Generic[Q, A]):
    """Hands queued questions to ``answer_all`` in batches of at most ``max_batch``, one batch
    at a time; ``answer_all`` returns one answer per question, in order."""

    def __init__(
        self, answer_all: Callable[[list[Q]], Awaitable[Sequence[A]]], *, max_batch: int = 500
    ) -> None:
        self._answer_all = answer_all
        self._max_batch = max_batch
        self._queue: list[tuple[Q, asyncio.Future[A]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def ask(self, question: Q) -> A:
        future: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._queue.append((question, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await settle_batch(batch, self._answer_all)
        finally:
            self._flusher = None
            if self._queue:  # arrived while a non-Exception error unwound us
                self._flusher = asyncio.create_task(self._flush())
