"""The append link: one dedicated connection that runs the group commit's statement.

Every batch of appends is one call of a prepared statement. Through psycopg's pooled, cursor-based
path the client's work around that call (taking a pooled connection and checking it, adapting
the parameters, psycopg's waiting generators and lock, giving the connection back) cost, at 64
clients, about a third of what the whole command path costs, and all of it runs while the server
waits. Here the batch's parameters, already in PostgreSQL's binary format (see ``arrays.py``), go
to libpq as they are, the answer comes back in binary, and the socket stays registered with the
event loop: a batch costs one send and one callback.

The link keeps the pooled path's promises. A statement must be answered within ``timeout``
seconds, else the socket is shut down and the call fails as unsure; a lost connection fails the
call in flight as unsure (it may have committed) and is replaced on the next call; an error the
server answers with leaves the connection in use and says nothing was stored.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Awaitable, Callable, Mapping, Sequence

import psycopg
from psycopg import AsyncConnection, pq
from psycopg.rows import TupleRow

from eventsignal.domain.errors import StoreUnavailable
from eventsignal.stores.postgres.deadline import cut

Connect = Callable[[], Awaitable[AsyncConnection[TupleRow]]]

_OK = pq.ConnStatus.OK
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_BINARY = pq.Format.BINARY
_SEVERITY = pq.DiagnosticField.SEVERITY_NONLOCALIZED
_SESSION_ENDS = (b"FATAL", b"PANIC")


class AppendLink:
    """Runs prepared statements, one at a time, on a connection of its own.

    ``connect`` opens and configures a connection, failing with
    :class:`~eventsignal.StoreUnavailable` or psycopg's ``OperationalError`` when it cannot;
    ``statements`` maps each statement's name to its ``PREPARE`` text, run on every new
    connection. ``on_stall`` runs when a statement misses its deadline (the store replaces its
    pooled connections then, as they likely share the broken path).
    """

    __slots__ = (
        "_conn",
        "_connect",
        "_ending",
        "_expired",
        "_failure",
        "_fd",
        "_loop",
        "_on_stall",
        "_result",
        "_statements",
        "_timeout",
        "_waiting",
    )

    def __init__(
        self,
        connect: Connect,
        statements: Mapping[bytes, str],
        timeout: float,
        on_stall: Callable[[], object],
    ) -> None:
        self._connect = connect
        self._statements = statements
        self._timeout = timeout
        self._on_stall = on_stall
        self._conn: AsyncConnection[TupleRow] | None = None
        self._fd = -1  # the connection's socket, as registered with the event loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: asyncio.Future[None] | None = None
        self._result: pq.abc.PGresult | None = None
        self._failure: Exception | None = None
        self._expired = False
        self._ending = False  # the server said, while the connection was idle, that it ends it

    async def call(
        self, name: bytes, params: Sequence[bytes], action: str, unsure: str
    ) -> pq.abc.PGresult:
        """Run the statement ``name`` with binary ``params``; its one result, in binary.

        ``action`` and ``unsure`` word the :class:`~eventsignal.StoreUnavailable` raised when
        the database cannot answer (``unsure`` once the statement may have run). An error the
        server answers with is raised as psycopg's exception for it, unless it says the server
        cannot serve now (a lock timeout, a full disk), which is unavailability too.
        """
        if self._waiting is not None:
            raise RuntimeError("AppendLink.call runs one statement at a time")
        pgconn = await self._ready(action)
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[None] = loop.create_future()
        self._waiting, self._result, self._failure, self._expired = waiting, None, None, False
        deadline = loop.call_later(self._timeout, self._expire)
        try:
            try:
                pgconn.send_query_prepared(
                    name, params, param_formats=[_BINARY] * len(params), result_format=_BINARY
                )
                if pgconn.flush():
                    loop.add_writer(self._fd, self._writable)
            except psycopg.OperationalError as exc:
                self._lost(exc)
            await waiting
        except BaseException:
            # Cancelled with the statement in flight: its answer would confuse the next call.
            if not waiting.done():
                self._drop()
            raise
        finally:
            deadline.cancel()
            self._waiting = None
        result, self._result = self._result, None
        if self._failure is not None or result is None:
            raise self._unavailable(action, unsure)
        if result.status != _TUPLES_OK:
            exc = psycopg.errors.error_from_result(result)
            if result.error_field(_SEVERITY) in _SESSION_ENDS:  # the connection goes too
                self._failure = exc
                self._drop()
                raise self._unavailable(action, unsure) from exc
            if isinstance(exc, psycopg.OperationalError):
                raise StoreUnavailable(
                    f"PostgreSQL could not complete {action} (rolled back: nothing was stored):"
                    f" {exc}"
                ) from exc
            raise exc
        return result

    async def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        conn = self._conn
        self._drop()
        if conn is not None:
            await conn.close()

    async def _ready(self, action: str) -> pq.abc.PGconn:
        """The open connection, checked; a new one if it is gone."""
        conn = self._conn
        if conn is not None and (self._ending or not self._alive(conn.pgconn)):
            self._drop()
            conn = None
        if conn is None:
            try:
                conn = await self._open()
            except (psycopg.OperationalError, TimeoutError) as exc:
                reason = exc if str(exc) else f"no connection within {self._timeout:g}s"
                raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {reason}") from exc
        return conn.pgconn

    async def _open(self) -> AsyncConnection[TupleRow]:
        conn = await self._connect()
        try:
            async with asyncio.timeout(self._timeout):
                for statement in self._statements.values():
                    await conn.execute(statement.encode())
        except BaseException:
            await conn.close()
            raise
        # A server ending an idle session (a terminated backend, a shutdown) says so in a
        # notice, then closes the socket: the notice alone must already retire the connection.
        conn.add_notice_handler(self._noticed)
        self._ending = False
        loop = asyncio.get_running_loop()
        self._fd = conn.pgconn.socket
        loop.add_reader(self._fd, self._readable)
        self._conn, self._loop = conn, loop
        return conn

    def _noticed(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        # Called from inside libpq's reading: only noted here, acted on before the next call.
        if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            self._ending = True

    @staticmethod
    def _alive(pgconn: pq.abc.PGconn) -> bool:
        """Whether an idle connection still works: a server that ended it said so, and closed
        the socket, so a socket with nothing to read is alive."""
        if pgconn.status != _OK:
            return False
        try:
            readable, _, _ = select.select([pgconn.socket], [], [], 0)
            if readable:
                pgconn.consume_input()
        except (OSError, ValueError, psycopg.OperationalError):
            return False
        return pgconn.status == _OK

    def _readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        pgconn = conn.pgconn
        try:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:  # the answer is complete
                    waiting = self._waiting
                    if waiting is not None and not waiting.done():
                        waiting.set_result(None)
                    return
                self._result = result
        except psycopg.OperationalError as exc:
            self._lost(exc)
            return
        if pgconn.status != _OK:
            self._lost(psycopg.OperationalError("the server closed the connection"))

    def _writable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            if not conn.pgconn.flush():
                assert self._loop is not None
                self._loop.remove_writer(self._fd)
        except psycopg.OperationalError as exc:
            self._lost(exc)

    def _expire(self) -> None:
        self._expired = True
        self._on_stall()
        self._lost(psycopg.OperationalError("no answer"))

    def _lost(self, exc: Exception) -> None:
        """The connection failed: fail the call in flight, and open a new one next time."""
        self._failure = exc
        waiting = self._waiting
        self._drop()
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # By the number it was registered with: a broken connection no longer tells it, and
            # a new connection may get the same number once this one is closed.
            loop.remove_reader(self._fd)
            loop.remove_writer(self._fd)
        cut(conn)  # whatever the server still sends is not read
        conn.pgconn.finish()

    def _unavailable(self, action: str, unsure: str) -> StoreUnavailable:
        tail = f"; {unsure}" if unsure else ""
        if self._expired:
            return StoreUnavailable(
                f"PostgreSQL did not answer within {self._timeout:g}s while {action}, so the "
                f"connection was closed{tail}"
            )
        return StoreUnavailable(f"PostgreSQL connection lost while {action}{tail}: {self._failure}")
