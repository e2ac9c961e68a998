"""Event stores: one contract (:class:`EventStore`) and its implementations beside it.

Durable backends are imported on first use, so ``eventsignal.stores`` works without their
drivers installed (``pip install eventsignal[postgres]`` or ``eventsignal[nats]`` brings them).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from eventsignal.stores.base import AggregateInfo, EventStore, StoredEvent
from eventsignal.stores.memory import MemoryStore

if TYPE_CHECKING:
    from eventsignal.stores.nats import NatsStore
    from eventsignal.stores.postgres import PostgresStore
    from eventsignal.stores.sqlite import SQLiteStore

__all__ = [
    "AggregateInfo",
    "EventStore",
    "MemoryStore",
    "NatsStore",
    "PostgresStore",
    "SQLiteStore",
    "StoredEvent",
]

_LAZY = {
    "SQLiteStore": "eventsignal.stores.sqlite",
    "PostgresStore": "eventsignal.stores.postgres",
    "NatsStore": "eventsignal.stores.nats",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventsignal.stores' has no attribute {name!r}")
    return getattr(import_module(module), name)
