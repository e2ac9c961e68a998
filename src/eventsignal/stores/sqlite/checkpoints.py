"""WAL checkpoints off the commit path.

SQLite's default copies the write-ahead log into the database file from inside a commit, once
the log holds 1,000 pages: that commit writes and syncs the database file before it returns, and
every append waiting behind it waits too. A :class:`SQLiteStore` turns that off on its write
connection and leaves the copying to a thread of its own, on a connection of its own, which
checkpoints ``PASSIVE`` (never waiting for, nor blocking, the writer or readers) a little after
commits happen. Copying less often also copies less: a page rewritten by many commits meanwhile
is copied once.

The log is reused from its start only once every frame in it was copied when a write transaction
begins, which the checkpointer, racing a busy writer, may never see. So the log is bounded: once
it holds :data:`WAL_LIMIT` pages, the writer thread checkpoints itself between two batches, after
acknowledging the first (the checkpointer copied most of the log already), and its next
transaction starts the log over. When commits stop for :data:`IDLE` seconds, the checkpointer
truncates the log, giving its disk space back.

Durability is unchanged: a commit still syncs the log before it is acknowledged, and a checkpoint
syncs the log, then the database file, before the log may be reused.
"""

from __future__ import annotations

import sqlite3
import threading

INTERVAL = 0.05  # seconds between two checkpoints while commits go on
IDLE = 1.0  # seconds without a commit before the log is truncated
WAL_LIMIT = 8192  # pages in the log past which the writer checkpoints itself
_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"
_TRUNCATE = "PRAGMA wal_checkpoint(TRUNCATE)"


class Checkpointer:
    """The thread checkpointing one store's database file while the store is open."""

    __slots__ = ("_committed", "_path", "_stopping", "_thread", "overdue")

    def __init__(self, path: str) -> None:
        self._path = path
        self._committed = threading.Event()
        self._stopping = threading.Event()
        self.overdue = False  # the log passed WAL_LIMIT: the writer checkpoints at its next pause
        self._thread = threading.Thread(
            target=self._run, name="eventsignal-sqlite-checkpointer", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """Note a commit: a checkpoint follows within :data:`INTERVAL`."""
        if not self._committed.is_set():  # a plain read, no lock, on almost every commit
            self._committed.set()

    def stop(self, timeout: float) -> None:
        """End the thread, with its connection (blocking)."""
        self._stopping.set()
        self._committed.set()
        self._thread.join(timeout)

    def checkpoint_in(self, connection: sqlite3.Connection) -> None:
        """On the writer's ``connection``, between two transactions: copy what the log still
        holds, so that the next transaction starts it over (unless a reader is still on it)."""
        busy, _, _ = connection.execute(_PASSIVE).fetchone()
        if not busy:  # else the checkpointer is at it: the writer asks again after a batch
            self.overdue = False

    def _run(self) -> None:
        committed, stopping = self._committed, self._stopping
        connection: sqlite3.Connection | None = None
        try:
            while True:
                if not committed.wait(IDLE):
                    if connection is not None:
                        connection = self._checkpoint(connection, _TRUNCATE)
                    committed.wait()  # idle: sleep until the next commit
                if stopping.is_set():
                    break
                committed.clear()
                connection = self._checkpoint(connection, _PASSIVE)
                stopping.wait(INTERVAL)  # commits meanwhile are copied by the next one
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(
        self, connection: sqlite3.Connection | None, mode: str
    ) -> sqlite3.Connection | None:
        """Checkpoint in ``mode``; return the connection to use next time (``None``: a new)."""
        try:
            if connection is None:
                # No busy wait: a TRUNCATE waiting for the write lock would hold up the writer.
                connection = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            _, log, _ = connection.execute(mode).fetchone()
        except sqlite3.Error:
            # Busy or gone for now: the next commit brings another try, and the writer's own
            # checkpoint bounds the log meanwhile.
            if connection is not None:
                connection.close()
            return None
        self.overdue = log >= WAL_LIMIT
        return connection
