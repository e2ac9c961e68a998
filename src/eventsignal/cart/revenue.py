"""Revenue over all paid carts, folded from the store's global log.

It reads the store, not this process's in-process bus, so it counts carts paid by other processes
too and is right after a restart: on start it folds every stored ``CartPaid``, then follows new
events. A page that must show its own writes calls :meth:`Revenue.catch_up` first.
"""

from __future__ import annotations

import asyncio
import contextlib

from eventsignal.cart.domain import CartPaid, cart_config
from eventsignal.serialization import EventSerializer
from eventsignal.stores import EventStore

_PAGE = 1000
_POLL_SECONDS = 1.0  # a store may not see other processes' appends; re-read at least this often


class Revenue:
    """The running total of paid carts in one store."""

    def __init__(self, store: EventStore, serializer: EventSerializer) -> None:
        self.store = store
        self.total = 0
        self.paid_carts = 0
        self.position = 0
        self._serializer = serializer
        self._paid_name = next(n for n, c in cart_config.event_types.items() if c is CartPaid)
        self._lock = asyncio.Lock()

    async def catch_up(self) -> None:
        """Fold every event stored after the last one seen."""
        async with self._lock:
            while True:
                page = await self.store.read_all(self.position, _PAGE)
                for record in page:
                    if record.aggregate_name == cart_config.name and record.name == self._paid_name:
                        paid: CartPaid = self._serializer.decode(record)
                        self.total += paid.total
                        self.paid_carts += 1
                    self.position = record.position
                if len(page) < _PAGE:
                    return

    async def follow(self) -> None:
        """Catch up, then keep up with new events until cancelled."""
        while True:
            await self.catch_up()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_SECONDS):
                    await self.store.wait_for_events(self.position)
