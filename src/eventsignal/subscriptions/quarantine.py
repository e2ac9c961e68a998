"""Setting stored events aside: every durable subscription passes a quarantined event by.

The log is append-only, so a bad event is never rewritten or deleted. When one stops a
subscription (its handler fails on it, or it cannot be read), an operator can quarantine its
position: running subscriptions skip it from their next lease renewal on, a stopped one once
restarted. The lasting fix is an upcaster or a compensating event; :func:`release` takes the
event out of quarantine again, for subscriptions that have not passed it yet.
"""

from __future__ import annotations

import time
from typing import Any

from eventsignal.domain.errors import ConfigurationError, EventNotFound
from eventsignal.stores.base import EventStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions.transaction import state_store_for


async def quarantine(
    store: EventStore, position: int, reason: str, *, checkpoints: SubscriptionStore | None = None
) -> None:
    """Quarantine the event at ``position`` with a reason; ``store`` must be open."""
    if not reason.strip():
        raise ConfigurationError("say why the event is quarantined")
    found = await store.read_all(position - 1, 1) if position > 0 else ()
    if not found or found[0].position != position:
        raise EventNotFound(position)
    async with (await _state(store, checkpoints)).subscription_transaction() as state:
        await state.quarantine(position, reason, time.time())


async def quarantined(
    store: EventStore, *, checkpoints: SubscriptionStore | None = None
) -> dict[int, str]:
    """The quarantined positions with their reasons, in position order."""
    async with (await _state(store, checkpoints)).subscription_reads() as reads:
        found: dict[int, str] = await reads.quarantined()
        return found


async def release(
    store: EventStore, position: int, *, checkpoints: SubscriptionStore | None = None
) -> bool:
    """Take ``position`` out of quarantine; ``False`` if it was not quarantined."""
    async with (await _state(store, checkpoints)).subscription_transaction() as state:
        released: bool = await state.unquarantine(position)
        return released


async def _state(store: EventStore, checkpoints: SubscriptionStore | None) -> Any:
    state = state_store_for(store, checkpoints)
    await state.setup_subscriptions()
    return state
