"""The in-memory store: everything in one process's memory, for tests and examples."""

from eventsignal.stores.memory.store import MemoryStore

__all__ = ["MemoryStore"]
