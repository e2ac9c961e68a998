"""The DCB view of the in-memory store passes the DCB compliance suite."""

from __future__ import annotations

from eventsignal.stores import EventStore, MemoryStore
from eventsignal.testing import DcbCompliance


class TestMemoryDcb(DcbCompliance):
    async def make_store(self) -> EventStore:
        store = MemoryStore()
        await store.open()
        return store
