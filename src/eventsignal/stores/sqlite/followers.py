"""Wake-ups for followers of one SQLite file, shared by every store on it in this process.

SQLite has no notifications, so a commit wakes the followers it can reach: those of every
:class:`~eventsignal.stores.SQLiteStore` open on the same file in this process, whatever event loop
they wait in. Followers in other processes are not reached; they bound their wait with a timeout
and re-read, which is how :meth:`EventStore.wait_for_events` is meant to be used anyway.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref

from eventsignal.wakeups import wake


class Followers:
    """Futures waiting for the next commit to one database file."""

    __slots__ = ("__weakref__", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[asyncio.Future[None]] = set()

    def add(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            self._waiters.add(waiter)

    def discard(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def wake(self) -> None:
        """Settle every waiting future, each in its own event loop."""
        if not self._waiters:
            return
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        wake(waiters)


_registry: weakref.WeakValueDictionary[str, Followers] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def followers_of(path: str) -> Followers:
    """The shared :class:`Followers` of the database file at ``path``."""
    key = os.path.realpath(path)
    with _registry_lock:
        followers = _registry.get(key)
        if followers is None:
            followers = _registry[key] = Followers()
        return followers
