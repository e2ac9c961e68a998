from eventsignal.stores import EventStore, MemoryStore
from eventsignal.testing import EventStoreCompliance


class TestMemoryStore(EventStoreCompliance):
    async def make_store(self) -> EventStore:
        store = MemoryStore()
        await store.open()
        return store
