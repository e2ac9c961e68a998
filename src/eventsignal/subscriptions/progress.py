"""In-process wake-ups for read-your-writes: a runner says "I moved", waiters re-check."""

from __future__ import annotations

import asyncio

from eventsignal.wakeups import wake

_waiters: dict[str, list[asyncio.Future[None]]] = {}


def notify(subscription: str) -> None:
    """Wake everyone in this process waiting on ``subscription`` (in any store; they re-check).

    Waiters may belong to event loops in other threads, so each is woken in its own loop.
    """
    waiters = _waiters.pop(subscription, None)
    if not waiters:
        return
    wake(waiters)


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
