"""Which snapshot store goes with an event store.

Memory and NATS stores keep snapshots themselves; SQL stores keep them in a table of their own
database, reached through a :class:`~eventsignal.stores.sql.snapshots.SQLSnapshotStore`.
"""

from __future__ import annotations

from eventsignal.stores.base import EventStore, SnapshotStore
from eventsignal.stores.sql import SQLStore


def snapshot_store_for(store: EventStore) -> SnapshotStore | None:
    """The snapshot store that goes with an event store, if it has one."""
    if isinstance(store, SnapshotStore):
        return store
    if isinstance(store, SQLStore):
        from eventsignal.stores.sql.snapshots import SQLSnapshotStore

        return SQLSnapshotStore(store)
    return None
