from eventsignal.stores import EventStore, MemoryStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.testing import (
    EventStoreCompliance,
    SubscriptionStoreCompliance,
    TenantCompliance,
)


class TestMemoryStore(EventStoreCompliance):
    async def make_store(self) -> EventStore:
        store = MemoryStore()
        await store.open()
        return store


class TestMemoryStoreSubscriptions(SubscriptionStoreCompliance):
    async def make_store(self) -> SubscriptionStore:
        return MemoryStore()


class TestMemoryStoreTenants(TenantCompliance):
    async def make_store(self) -> EventStore:
        store = MemoryStore()
        await store.open()
        return store
