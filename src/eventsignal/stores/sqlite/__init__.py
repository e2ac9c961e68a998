"""The SQLite adapter: the embedded default, one file, WAL and a single writer thread."""

from eventsignal.stores.sqlite.store import SQLiteStats, SQLiteStore

__all__ = ["SQLiteStats", "SQLiteStore"]
