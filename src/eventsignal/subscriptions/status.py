"""What subscriptions are doing: positions, lag, parked events; and waiting for them.

Everything here reads the subscription state only, so it works from a store URL without the
user's handlers (the command line's ``eventsignal subscriptions URL``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgspec

from eventsignal.stores.base import EventStore
from eventsignal.stores.subscription_state import ParkedEvent, SubscriptionStore
from eventsignal.stores.subscription_state import wait_until_processed as _wait
from eventsignal.subscriptions.transaction import state_store_for


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


async def _state(store: EventStore, checkpoints: SubscriptionStore | None) -> Any:
    state = state_store_for(store, checkpoints)
    await state.setup_subscriptions()
    return state


async def subscription_status(
    store: EventStore, *, checkpoints: SubscriptionStore | None = None
) -> list[SubscriptionStatus]:
    """Every subscription the store knows, by name. ``store`` must be open."""
    state = await _state(store, checkpoints)
    head = await store.head_position()
    async with state.subscription_reads() as reads:
        rows = await reads.overview(time.time())
    return [
        SubscriptionStatus(
            name=row.name,
            position=row.position,
            head=head,
            lag=max(head - row.position, 0),
            partitions=row.partitions,
            leased=row.leased,
            parked=row.parked,
        )
        for row in rows
    ]


async def parked_events(
    store: EventStore,
    subscription: str | None = None,
    *,
    checkpoints: SubscriptionStore | None = None,
) -> list[ParkedEvent]:
    """The parked events of one subscription (or all), in position order."""
    state = await _state(store, checkpoints)
    async with state.subscription_reads() as reads:
        found: list[ParkedEvent] = await reads.parked(subscription)
        return found


async def processed_position(
    store: EventStore, subscription: str, *, checkpoints: SubscriptionStore | None = None
) -> int | None:
    """The position every partition of ``subscription`` has passed (``None``: never run)."""
    state = await _state(store, checkpoints)
    async with state.subscription_reads() as reads:
        reached: int | None = await reads.progress(subscription)
        return reached


async def wait_until_processed(
    store: EventStore,
    subscription: str | Iterable[str],
    position: int,
    timeout: float = 5.0,  # noqa: ASYNC109 - the deadline is part of the contract
    *,
    checkpoints: SubscriptionStore | None = None,
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
    await _wait(state_store_for(store, checkpoints), names, position, timeout)
