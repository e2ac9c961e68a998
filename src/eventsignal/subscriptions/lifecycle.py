"""What every subscription runner shares: a loop in a background task, and why it ended."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self


class RunnerLifecycle:
    """``async with runner:`` starts the loop and stops it; :meth:`wait` reports how it ended.

    Subclasses implement :meth:`start` (which sets ``_task``) and :meth:`stop`, and set ``error``
    when the loop fails.
    """

    _task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

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

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        """Wait until the runner ends on its own (a ``"stop"`` failure policy); raise why."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error
