"""In-process wake-ups for read-your-writes: a runner says "I moved", waiters re-check."""

from __future__ import annotations

import asyncio

_waiters: dict[str, list[asyncio.Future[None]]] = {}


def notify(subscription: str) -> None:
    """Wake everyone in this process waiting on ``subscription`` (in any store; they re-check)."""
    waiters = _waiters.pop(subscription, None)
    if waiters:
        for waiter in waiters:
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)


async def moved(subscription: str, within: float) -> None:
    """Return when a runner of ``subscription`` here advanced, or after ``within`` seconds."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _waiters.setdefault(subscription, []).append(waiter)
    try:
        async with asyncio.timeout(within):
            await waiter
    except TimeoutError:
        pass
    finally:
        waiters = _waiters.get(subscription)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
