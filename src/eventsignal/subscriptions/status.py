"""What subscriptions are doing: positions, lag, parked events; and waiting for them.

Everything here reads the subscription tables only, so it works from a store URL without the
user's handlers (the command line's ``eventsignal subscriptions URL``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from eventsignal.stores.base import EventStore
from eventsignal.subscriptions.checkpoints import Checkpoints, ParkedEvent
from eventsignal.subscriptions.errors import SubscriptionTimeout
from eventsignal.subscriptions.progress import moved
from eventsignal.subscriptions.transaction import Storage, storage_for

_POLL = 0.05  # how often waiters look at the database for runners in other processes


class SubscriptionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription as stored.

    ``position`` is the point every partition has passed; ``lag`` counts the global positions
    between it and the store's head (events of other types included).
    """

    name: str
    position: int
    head: int
    lag: int
    partitions: int
    leased: int
    parked: int


def _checkpoints(store: EventStore, checkpoints: Storage | None) -> Checkpoints:
    return Checkpoints(checkpoints if checkpoints is not None else storage_for(store))


async def subscription_status(
    store: EventStore, *, checkpoints: Storage | None = None
) -> list[SubscriptionStatus]:
    """Every subscription the store knows, by name. ``store`` must be open."""
    db = _checkpoints(store, checkpoints)
    await db.setup()
    head = await store.head_position()
    async with db.reading() as tx:
        rows = await db.overview(tx, time.time())
    return [
        SubscriptionStatus(
            name=name,
            position=position,
            head=head,
            lag=max(head - position, 0),
            partitions=partitions,
            leased=leased,
            parked=parked,
        )
        for name, position, partitions, leased, parked in rows
    ]


async def parked_events(
    store: EventStore, subscription: str | None = None, *, checkpoints: Storage | None = None
) -> list[ParkedEvent]:
    """The parked events of one subscription (or all), in position order."""
    db = _checkpoints(store, checkpoints)
    await db.setup()
    async with db.reading() as tx:
        return await db.parked(tx, subscription)


async def processed_position(
    store: EventStore, subscription: str, *, checkpoints: Storage | None = None
) -> int | None:
    """The position every partition of ``subscription`` has passed (``None``: never run)."""
    db = _checkpoints(store, checkpoints)
    await db.setup()
    async with db.reading() as tx:
        return await db.progress(tx, subscription)


async def wait_until_processed(
    store: EventStore,
    subscription: str | Iterable[str],
    position: int,
    timeout: float = 5.0,  # noqa: ASYNC109 - the deadline is part of the contract
    *,
    checkpoints: Storage | None = None,
) -> None:
    """Return once ``subscription`` (a name, or several) has handled every event up to
    ``position``.

    This is read-your-writes: after a command stored events up to ``position``, a read model
    maintained by the subscription reflects them once this returns. Runners in this process wake
    the waiter at once; runners elsewhere are seen by polling every 50 ms. Raises
    :class:`SubscriptionTimeout` (naming the first subscription still behind) once ``timeout``
    seconds have passed in all.
    """
    names = [subscription] if isinstance(subscription, str) else list(subscription)
    if position <= 0 or not names:
        return
    db = _checkpoints(store, checkpoints)
    await db.setup()
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            async with db.reading() as tx:
                reached = await db.progress(tx, name)
            if reached is not None and reached >= position:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise SubscriptionTimeout(name, position, reached or 0, timeout)
            await moved(name, min(left, _POLL))
