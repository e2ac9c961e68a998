"""Waking followers of a PostgreSQL store: LISTEN/NOTIFY, local commits, and a slow poll.

Every append batch sends ``pg_notify(channel, head position)`` in its transaction, so followers in
any process learn about it when it commits. One dedicated connection per store LISTENs, from the
first time anyone waits: a store that only writes never opens it, so its own commits do not come
back to it as notifications to read (at one writer that reading costs about as much as the append
itself). Local commits wake waiters directly, without the round trip through the server.
Notifications can be lost while the listening connection is down, so the listener also polls the
head position while anyone is waiting, and after every reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import AsyncConnection, Notify, pq, sql
from psycopg.rows import TupleRow

from eventsignal.stores.postgres.deadline import Deadline

logger = logging.getLogger("eventsignal.stores.postgres")

Connect = Callable[[], Awaitable[AsyncConnection[TupleRow]]]

# The head of the whole log, every tenant's (a function: see the events schema, version 3).
HEAD_POSITION = "SELECT eventsignal_head_position()"


class HeadWatch:
    """Tracks the highest position known to be committed and wakes those waiting past it."""

    def __init__(
        self, connect: Connect, channel: str, *, poll_interval: float = 1.0, timeout: float = 5.0
    ) -> None:
        self.head = 0
        self._connect = connect
        self._channel = channel
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    def listen(self) -> None:
        """Start listening, unless started already. Nobody waits for LISTEN to be in place: the
        listener reads the head once it is, which finds what committed before."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="eventsignal-postgres-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        self._wake()

    def advance(self, position: int) -> None:
        """Record that ``position`` is committed; wake waiters if that is news."""
        if position > self.head:
            self.head = position
            self._wake()

    async def wait(self, after_position: int, read_head: Callable[[], Awaitable[int]]) -> None:
        """Return once a position past ``after_position`` may be committed."""
        if self.head > after_position:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # Registered first, then asked: an append committing in between still wakes us.
            self.listen()
            self.advance(await read_head())
            if self.head > after_position:
                return
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await self._connect() as conn:
                    # Notifications that arrive while psycopg runs a poll reach us through this.
                    conn.add_notify_handler(self._handle)
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    backoff = 0.1
                    await self._poll(conn)  # catch up on what was missed while not listening
                    while True:
                        await self._read_notifications(conn.pgconn, self._poll_interval)
                        if self._waiters:
                            await self._poll(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("LISTEN %s lost (%s); reconnecting", self._channel, exc)
                self._wake()  # followers re-read, and see for themselves whether the store is back
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _read_notifications(self, pgconn: pq.abc.PGconn, seconds: float) -> None:
        """Handle notifications as they arrive, for ``seconds``; raise if the connection fails.

        Every append batch of every process sends one, so this is a callback on the socket
        itself: psycopg's ``notifies()`` costs a timer and two changes to the event loop's
        watched sockets per notification, which at one batch per command was a tenth of a
        command's CPU.
        """
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pgconn.consume_input()
                while (notify := pgconn.notifies()) is not None:
                    self._notified(notify.extra.decode())
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the server closed the connection")
            except psycopg.OperationalError as exc:
                if not failed.done():
                    failed.set_exception(exc)

        fd = pgconn.socket  # a broken connection no longer tells it
        loop.add_reader(fd, readable)
        try:
            await asyncio.wait([failed], timeout=seconds)
        finally:
            loop.remove_reader(fd)
        if failed.done():
            failed.result()

    def _handle(self, notify: Notify) -> None:
        self._notified(notify.payload)

    def _notified(self, payload: str) -> None:
        try:
            self.advance(int(payload))
        except ValueError:
            self._wake()

    async def _poll(self, conn: AsyncConnection[TupleRow]) -> None:
        # A stalled connection would otherwise hold the listener, and every poll, forever; cut,
        # it fails and the listener reconnects.
        with Deadline(conn, self._timeout):
            row = await (await conn.execute(HEAD_POSITION)).fetchone()
        if row is not None:
            self.advance(int(row[0]))
