"""The append link: one dedicated connection that runs the group commit's statement.

Every batch of appends is one call of a prepared statement. Through psycopg's pooled, cursor-based
path the client's work around that call (taking a pooled connection and checking it, adapting
the parameters, psycopg's waiting generators and lock, giving the connection back) cost, at 64
clients, about a third of what the whole command path costs, and all of it runs while the server
waits. Here the batch's parameters, already in PostgreSQL's binary format (see ``arrays.py``), go
to libpq as they are, the answer comes back in binary, and the socket stays registered with the
event loop: a batch costs one send and one callback.

The connection runs in pipeline mode: a statement is sent while earlier ones are still running, each
followed by its own sync point, so each commits or fails on its own, in the order sent. The server
then starts the next batch the moment the last one commits, instead of idling for a round trip and
for the client's work on the answer.

The link keeps the pooled path's promises. A statement must be answered within ``timeout``
seconds, else the socket is shut down and the calls in flight fail as unsure; a lost connection
fails the calls in flight as unsure (they may have committed) and is replaced on the next call;
an error the server answers with leaves the connection in use and says nothing was stored.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

import psycopg
from psycopg import AsyncConnection, pq
from psycopg.rows import TupleRow

from eventsignal.domain.errors import StoreUnavailable
from eventsignal.stores.postgres.deadline import cut

Connect = Callable[[], Awaitable[AsyncConnection[TupleRow]]]

_OK = pq.ConnStatus.OK
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC
_BINARY = pq.Format.BINARY
_SEVERITY = pq.DiagnosticField.SEVERITY_NONLOCALIZED
_SESSION_ENDS = (b"FATAL", b"PANIC")

PIPELINE = psycopg.Pipeline.is_supported()
"""Whether libpq can send a statement before the last one is answered (libpq 14 on; the
``binary`` extra bundles a newer one). Without it the link runs one statement at a time."""

# Seconds a connection may leave a statement unanswered and still be sent the next one: far more
# than a healthy batch takes, far less than a stall lasts.
PILE_ON = 0.05


class _Call:
    """One statement in flight: its first result, and how its wait ended."""

    __slots__ = ("answered", "deadline", "expired", "failure", "result", "since", "waiting")

    def __init__(
        self, waiting: asyncio.Future[None], since: float, deadline: asyncio.TimerHandle
    ) -> None:
        self.waiting = waiting
        self.since = since  # when it was sent, or reached the head of the line if later
        self.deadline = deadline  # the call's, not its caller's: it holds if the caller leaves
        self.result: pq.abc.PGresult | None = None
        self.answered = False  # all its results are in; its sync point comes next
        self.failure: Exception | None = None
        self.expired = False  # its connection was cut because an answer was late


class AppendLink:
    """Runs prepared statements, in the order called, on a connection of its own.

    ``connect`` opens and configures a connection, failing with
    :class:`~eventsignal.StoreUnavailable` or psycopg's ``OperationalError`` when it cannot;
    ``statements`` maps each statement's name to its ``PREPARE`` text, run on every new
    connection. ``on_stall`` runs when a statement misses its deadline (the store replaces its
    pooled connections then, as they likely share the broken path).
    """

    __slots__ = (
        "_calls",
        "_conn",
        "_connect",
        "_ending",
        "_fd",
        "_loop",
        "_on_stall",
        "_progress",
        "_sending",
        "_statements",
        "_timeout",
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
        self._calls: deque[_Call] = deque()  # in flight on this connection, in the order sent
        self._sending = asyncio.Lock()  # first come, first sent, across waits and reconnects
        self._progress: asyncio.Future[None] | None = None  # settled when a call ends
        self._ending = False  # the server said, while the connection was idle, that it ends it

    async def call(
        self, name: bytes, params: Sequence[bytes], action: str, unsure: str
    ) -> pq.abc.PGresult:
        """Run the statement ``name`` with binary ``params``; its one result, in binary.

        Calls may overlap: each is sent at once, behind those still running, and committed on
        its own; but not behind a statement unanswered for ``PILE_ON`` seconds, which may be
        stalled: a stall then costs only the statements already on its connection, and this
        call waits for them to end (on a fresh connection, if it has to).

        ``action`` and ``unsure`` word the :class:`~eventsignal.StoreUnavailable` raised when
        the database cannot answer (``unsure`` once the statement may have run). An error the
        server answers with is raised as psycopg's exception for it, unless it says the server
        cannot serve now (a lock timeout, a full disk), which is unavailability too.
        """
        loop = asyncio.get_running_loop()
        async with self._sending:
            call = await self._send(loop, name, params, action)
        # Cancelled with the statement in flight, the call stays in line: its answer, when it
        # comes, is read and dropped, and the connection serves the calls behind it.
        await call.waiting
        result = call.result
        if call.failure is not None or result is None:
            raise self._unavailable(call, action, unsure)
        if result.status != _TUPLES_OK:
            exc = psycopg.errors.error_from_result(result)
            if result.error_field(_SEVERITY) in _SESSION_ENDS:  # the connection goes too
                call.failure = exc
                self._lost(exc)
                raise self._unavailable(call, action, unsure) from exc
            if isinstance(exc, psycopg.OperationalError):
                raise StoreUnavailable(
                    f"PostgreSQL could not complete {action} (rolled back: nothing was stored):"
                    f" {exc}"
                ) from exc
            raise exc
        return result

    async def _send(
        self,
        loop: asyncio.AbstractEventLoop,
        name: bytes,
        params: Sequence[bytes],
        action: str,
    ) -> _Call:
        calls = self._calls
        while calls and (not PIPELINE or loop.time() - calls[0].since > PILE_ON):
            if self._progress is None:
                self._progress = loop.create_future()
            await asyncio.wait((self._progress,))
        pgconn = await self._ready(action)
        now = loop.time()
        call = _Call(loop.create_future(), now, loop.call_at(now + self._timeout, self._expire))
        calls.append(call)
        try:
            pgconn.send_query_prepared(
                name, params, param_formats=[_BINARY] * len(params), result_format=_BINARY
            )
            if PIPELINE:
                pgconn.pipeline_sync()
            if pgconn.flush():
                loop.add_writer(self._fd, self._writable)
            self._answers(pgconn)  # libpq reads while it cannot write: answers may be waiting
        except psycopg.OperationalError as lost:
            self._lost(lost)
        except BaseException:
            # Whatever went out of this statement, the connection cannot be trusted with more.
            self._lost(psycopg.OperationalError("sending a statement failed"))
            raise
        return call

    async def close(self) -> None:
        """Close the connection (failing any call still in flight); the next call opens a new
        one."""
        conn = self._conn
        self._lost(psycopg.OperationalError("the store was closed"))
        if conn is not None:
            await conn.close()

    async def _ready(self, action: str) -> pq.abc.PGconn:
        """The open connection, checked when idle; a new one if it is gone."""
        conn = self._conn
        if conn is not None and not (self._calls or self._usable(conn)):
            self._drop()
            conn = None
        if conn is None:
            try:
                conn = await self._open()
            except (psycopg.OperationalError, TimeoutError) as exc:
                reason = exc if str(exc) else f"no connection within {self._timeout:g}s"
                raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {reason}") from exc
        return conn.pgconn

    def _usable(self, conn: AsyncConnection[TupleRow]) -> bool:
        return not self._ending and self._alive(conn.pgconn)

    async def _open(self) -> AsyncConnection[TupleRow]:
        conn = await self._connect()
        try:
            async with asyncio.timeout(self._timeout):
                for statement in self._statements.values():
                    await conn.execute(statement.encode())
            if PIPELINE:
                conn.pgconn.enter_pipeline_mode()
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
        try:
            conn.pgconn.consume_input()
        except psycopg.OperationalError as exc:
            self._lost(exc)
            return
        self._answers(conn.pgconn)

    def _answers(self, pgconn: pq.abc.PGconn) -> None:
        """Settle the calls whose answers libpq holds, in order."""
        calls = self._calls
        try:
            # Each call's answer: its results, an end-of-results marker (None), then in
            # pipeline mode its sync point. is_busy() comes first: it also parses what arrived
            # while idle, such as the notice of a server ending the session.
            while not pgconn.is_busy() and calls:
                result = pgconn.get_result()
                call = calls[0]
                if result is None:
                    if call.answered or call.result is None:
                        break  # nothing more has arrived
                    call.answered = True
                    if PIPELINE:
                        continue
                elif result.status != _PIPELINE_SYNC:
                    if call.result is None:
                        call.result = result
                    continue
                calls.popleft()
                self._ended(call)
                if calls:  # the next one's time starts now, not while it queued
                    self._restart(calls[0])
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
            return
        self._answers(conn.pgconn)  # what libpq read while it could not write

    def _expire(self) -> None:
        for call in self._calls:
            call.expired = True
        self._on_stall()
        self._lost(psycopg.OperationalError("no answer"))

    def _lost(self, exc: Exception) -> None:
        """The connection failed: fail every call in flight, and open a new one next time."""
        calls = list(self._calls)
        self._calls.clear()
        self._drop()
        for call in calls:
            call.failure = exc
            self._ended(call)

    def _restart(self, call: _Call) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now > call.since:
            call.since = now
            call.deadline.cancel()
            call.deadline = self._loop.call_at(now + self._timeout, self._expire)

    def _ended(self, call: _Call) -> None:
        call.deadline.cancel()
        if not call.waiting.done():
            call.waiting.set_result(None)
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.set_result(None)

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

    def _unavailable(self, call: _Call, action: str, unsure: str) -> StoreUnavailable:
        tail = f"; {unsure}" if unsure else ""
        if call.expired:
            return StoreUnavailable(
                f"PostgreSQL did not answer within {self._timeout:g}s while {action}, so the "
                f"connection was closed{tail}"
            )
        return StoreUnavailable(f"PostgreSQL connection lost while {action}{tail}: {call.failure}")
