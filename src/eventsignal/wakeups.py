"""Waking futures that may belong to event loops in other threads.

A commit made in one thread (a store's writer, another event loop) must reach followers waiting
anywhere in the process; a future may only be settled from its own loop, so each is settled there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


def wake(waiters: Iterable[asyncio.Future[None]]) -> None:
    """Settle every waiting future, each in its own event loop."""
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for waiter in waiters:
        loop = waiter.get_loop()
        if loop is current:
            _settle(waiter)
        elif not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, and nobody is waiting there.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, waiter)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
