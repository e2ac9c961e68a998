"""Wake-ups for followers of one SQLite file, shared by every store on it in this process.

SQLite has no notifications. A commit made in this process wakes, at once, the followers of every
:class:`~eventsignal.stores.SQLiteStore` open on the same file here, whatever event loop they wait
in. Commits made by other processes are noticed by a watcher thread that, only while someone
waits, asks SQLite every :data:`WATCH_INTERVAL` seconds whether the file changed
(``PRAGMA data_version``, answered from the shared WAL index without reading the database) and,
when it did, reads the head position and wakes the followers waiting for less. Nobody waiting
means no polling at all; the thread lingers a little so that a follower going round its loop does
not start a new one every time.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import weakref

from eventsignal.wakeups import wake

WATCH_INTERVAL = 0.04  # seconds between checks while someone waits
_LINGER = 2.0  # seconds the watcher stays, idle, after the last follower stopped waiting
_HEAD = "SELECT coalesce(max(position), 0) FROM eventsignal_events"


class Followers:
    """Futures waiting for the next commit to one database file, each with the position it
    waits past."""

    __slots__ = (
        "__weakref__",
        "_changed",
        "_path",
        "_stores",
        "_waiters",
        "_watcher",
        "_watching",
    )

    def __init__(self, path: str) -> None:
        self._path = path
        self._changed = threading.Condition(threading.Lock())
        self._waiters: dict[asyncio.Future[None], int] = {}
        self._watching = False
        self._watcher: threading.Thread | None = None
        self._stores = 0  # open stores on the file in this process

    def opened(self) -> None:
        with self._changed:
            self._stores += 1

    def closed(self, timeout: float) -> None:
        """The last store on the file closed: end the watcher, with its connection to the file,
        before the store says it is closed (a caller may delete the file next). Blocking."""
        with self._changed:
            self._stores = max(self._stores - 1, 0)
            if self._stores:
                return
            watcher = self._watcher
            self._changed.notify()
        if watcher is not None:
            watcher.join(timeout)

    def add(self, waiter: asyncio.Future[None], after_position: int) -> None:
        """Wake ``waiter`` at the next commit here, or once another process stores an event
        past ``after_position``."""
        with self._changed:
            self._waiters[waiter] = after_position
            if self._watching:
                self._changed.notify()
                return
            self._watching = True
            watcher = self._watcher = threading.Thread(
                target=self._watch, name=f"eventsignal-followers:{self._path}", daemon=True
            )
        watcher.start()

    def discard(self, waiter: asyncio.Future[None]) -> None:
        with self._changed:
            self._waiters.pop(waiter, None)

    def wake(self) -> None:
        """Settle every waiting future, each in its own event loop (a commit in this process)."""
        if not self._waiters:
            return
        with self._changed:
            waiters, self._waiters = self._waiters, {}
        wake(waiters)

    def _wake_past(self, head: int) -> None:
        with self._changed:
            due = [waiter for waiter, after in self._waiters.items() if after < head]
            for waiter in due:
                del self._waiters[waiter]
        wake(due)

    def _watch(self) -> None:
        """Poll the file while anyone waits; end after lingering idle for :data:`_LINGER`."""
        connection: sqlite3.Connection | None = None
        seen: int | None = None  # data_version when the head was last read
        try:
            while True:
                with self._changed:
                    if not self._waiters and self._stores:
                        self._changed.wait(_LINGER)
                    if not self._waiters or not self._stores:
                        self._watching = False
                        return
                time.sleep(WATCH_INTERVAL)
                try:
                    if connection is None:
                        connection = sqlite3.connect(self._path, timeout=1.0)
                        seen = None  # a fresh connection: compare the head once
                    (version,) = connection.execute("PRAGMA data_version").fetchone()
                    if version != seen:
                        seen = version
                        (head,) = connection.execute(_HEAD).fetchone()
                        self._wake_past(head)
                except sqlite3.Error:
                    # Busy or gone for now: try again next time (followers also bound their wait).
                    if connection is not None:
                        connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()


_registry: weakref.WeakValueDictionary[str, Followers] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def followers_of(path: str) -> Followers:
    """The shared :class:`Followers` of the database file at ``path``."""
    key = os.path.realpath(path)
    with _registry_lock:
        followers = _registry.get(key)
        if followers is None:
            followers = _registry[key] = Followers(key)
        return followers
