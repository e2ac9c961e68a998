"""Setting stored events aside: every durable subscription passes a quarantined event by.

The log is append-only, so a bad event is never rewritten or deleted. When one stops a
subscription (its handler fails on it, or it cannot be read), an operator can quarantine its
position: running subscriptions skip it from their next lease renewal on, a stopped one once
restarted. The lasting fix is an upcaster or a compensating event; :func:`release` takes the
event out of quarantine again, for subscriptions that have not passed it yet.
"""

from __future__ import annotations

import time

from eventsignal.domain.errors import ConfigurationError, EventNotFound
from eventsignal.stores.base import EventStore
from eventsignal.subscriptions.checkpoints import Checkpoints
from eventsignal.subscriptions.transaction import Storage, storage_for


async def quarantine(
    store: EventStore, position: int, reason: str, *, checkpoints: Storage | None = None
) -> None:
    """Quarantine the event at ``position`` with a reason; ``store`` must be open."""
    if not reason.strip():
        raise ConfigurationError("say why the event is quarantined")
    found = await store.read_all(position - 1, 1) if position > 0 else ()
    if not found or found[0].position != position:
        raise EventNotFound(position)
    db = await _checkpoints(store, checkpoints)
    async with db.transaction() as tx:
        await db.quarantine(tx, position, reason, time.time())


async def quarantined(store: EventStore, *, checkpoints: Storage | None = None) -> dict[int, str]:
    """The quarantined positions with their reasons, in position order."""
    db = await _checkpoints(store, checkpoints)
    async with db.transaction() as tx:
        return await db.quarantined(tx)


async def release(store: EventStore, position: int, *, checkpoints: Storage | None = None) -> bool:
    """Take ``position`` out of quarantine; ``False`` if it was not quarantined."""
    db = await _checkpoints(store, checkpoints)
    async with db.transaction() as tx:
        return await db.unquarantine(tx, position)


async def _checkpoints(store: EventStore, checkpoints: Storage | None) -> Checkpoints:
    db = Checkpoints(checkpoints if checkpoints is not None else storage_for(store))
    await db.setup()
    return db
