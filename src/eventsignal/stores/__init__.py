"""Event stores: one contract (:class:`EventStore`) and its implementations.

Durable backends import their drivers lazily, so ``eventsignal.stores`` works without the extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsignal.stores.base import AggregateInfo, EventStore, StoredEvent
from eventsignal.stores.memory import MemoryStore

if TYPE_CHECKING:
    pass

__all__ = ["AggregateInfo", "EventStore", "MemoryStore", "StoredEvent"]


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'eventsignal.stores' has no attribute {name!r}")
