"""A pooled connection kept by a writer that commits one batch after another.

The DCB group commit sends its batches one at a time. Taking a connection from the pool and
giving it back for each batch costs, at one client, a sixth or more of what the client spends
on an append (the pool's lock, its checks, the connection's own context). So the writer keeps
the connection while batches keep coming, and gives it back once it has been idle for ``idle``
seconds, or at its next batch once it has been kept for ``longest`` seconds, so that the pool
still sees it now and then (to replace it when it is too old, for one). A connection that has
something to read while idle (the server closed it, or terminated its backend) is given back at
the next batch, not used: the pool replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

C = TypeVar("C", bound=AsyncConnection[Any])


class HeldConnection(Generic[C]):
    """The connection of one serial writer, between its batches (see the module's docstring)."""

    def __init__(self, *, idle: float = 0.05, longest: float = 1.0) -> None:
        self._idle = idle
        self._longest = longest
        self._conn: C | None = None
        self._pool: AsyncConnectionPool[C] | None = None
        self._taken_at = 0.0  # when the kept connection came from the pool
        self._used_at = 0.0  # when its last batch ended
        self._timer: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[None]] = set()

    async def take(self, pool: AsyncConnectionPool[C]) -> C:
        """The kept connection if it is fit for another batch, else one from ``pool``."""
        conn, self._conn = self._conn, None
        now = asyncio.get_running_loop().time()
        if conn is not None:
            if now - self._taken_at < self._longest and _quiet(conn):
                return conn
            await self.give_back(conn)
        conn = await pool.getconn()
        self._pool = pool
        self._taken_at = now
        return conn

    def keep(self, conn: C) -> None:
        """``conn`` finished a batch cleanly: keep it for the next one."""
        if self._conn is not None:  # taken twice meanwhile: one is enough
            self._return_soon(self._conn)
        self._conn = conn
        loop = asyncio.get_running_loop()
        self._used_at = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self._idle, self._expire)

    async def give_back(self, conn: C) -> None:
        """``conn`` failed a batch: back to the pool, which replaces it if it is broken."""
        assert self._pool is not None  # it came from there
        await _give_back(self._pool, conn)

    def let_go(self) -> None:
        """Give the kept connection back now, if idle (its path may be broken: the pool, being
        drained, replaces it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._return_soon(conn)

    async def close(self) -> None:
        """Give the kept connection back now (before the pool closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.give_back(conn)
        await asyncio.gather(*list(self._returning))

    def _expire(self) -> None:
        self._timer = None
        if self._conn is None:
            return  # in use: keep() sets the timer again
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._used_at
        if idle < self._idle:
            self._timer = loop.call_later(self._idle - idle, self._expire)
            return
        conn, self._conn = self._conn, None
        self._return_soon(conn)

    def _return_soon(self, conn: C) -> None:
        task = asyncio.get_running_loop().create_task(self.give_back(conn))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)


def _quiet(conn: AsyncConnection[Any]) -> bool:
    """Nothing to read on an idle connection: the server did not close it meanwhile."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return False
    return not readable


async def _give_back(pool: AsyncConnectionPool[Any], conn: AsyncConnection[Any]) -> None:
    try:
        await pool.putconn(conn)  # a closed pool closes it
    except Exception:
        with contextlib.suppress(Exception):
            await conn.close()
