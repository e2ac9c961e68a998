"""What every receiver shares: a background task, started and stopped with ``async with``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from eventsignal.publishing.inbox import Inbox, Verdict

logger = logging.getLogger("eventsignal.publishing")


class Receiver:
    """Runs :meth:`run` in the background between ``async with`` and its end."""

    inbox: Inbox
    retry_delay = 1.0  # seconds before a message the store could not take is tried again

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.received = 0  # messages handled, parked included
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    async def settle(
        self,
        attempt: Callable[[], Awaitable[Verdict]],
        keep: Callable[[], Awaitable[object]] | None = None,
    ) -> Verdict:
        """Hand one message over until it is done or parked. While the store cannot take it,
        try it again in place (``keep`` tells the broker it is still being worked on), so the
        messages after it wait and the broker's order holds."""
        while (verdict := await attempt()) == "retry":
            if keep is not None:
                await keep()
            await asyncio.sleep(self.retry_delay)
        self.received += 1
        return verdict

    async def _forever(self) -> None:
        failures = 0
        while True:
            try:
                await self.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.exception("inbox %r: receiving failed; trying again", self.inbox.name)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._forever(), name=f"inbox:{self.inbox.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
