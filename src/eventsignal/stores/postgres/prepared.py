"""One statement, prepared once per connection, called with parameters already in PostgreSQL's
binary format, answered in binary: the shortest way psycopg offers from bytes to an answer.

A group-commit batch is serial with the server's work, and at one writer so is everything the
client does per call. psycopg's cursor adapts every parameter and every result column through
Python objects made per call, which costs about as much as the server's work for a small batch.
Parameters built here are bytes already (see :mod:`~eventsignal.stores.postgres.arrays`), so
this sends them as they are, with psycopg's own generators and wait loop, and leaves the answer
as bytes for the caller to read.

The statement is prepared on a connection the first time it is called there. Should the server
have forgotten it (a ``DEALLOCATE ALL`` in a transaction of the store's
:meth:`~eventsignal.stores.postgres.PostgresStore.transaction`), the call fails before anything
ran, and is prepared and sent again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import AsyncConnection, capabilities, errors, generators, pq
from psycopg.adapt import Transformer

_BINARY = pq.Format.BINARY
_INVALID_NAME = "26000"  # invalid_sql_statement_name: no prepared statement of that name
_CHUNK = pq.ExecStatus.TUPLES_CHUNK if hasattr(pq.ExecStatus, "TUPLES_CHUNK") else None
_FATAL = pq.ExecStatus.FATAL_ERROR

CHUNKED = _CHUNK is not None and capabilities.has_stream_chunked()
"""Whether rows can come in chunks as the server sends them (libpq 17 on)."""


class PreparedCall:
    """``sql`` prepared as ``name``; its ``$1``.. placeholders say their types by casts.

    ``run`` sends binary parameters (``None`` is NULL) and returns the one row's binary values.
    """

    def __init__(self, name: str, sql: str) -> None:
        self._name = name.encode()
        self._sql = sql.encode()
        self._prepared: weakref.WeakSet[AsyncConnection[Any]] = weakref.WeakSet()

    async def run(
        self, conn: AsyncConnection[Any], params: Sequence[bytes | None]
    ) -> list[bytes | None]:
        async with conn.lock:  # what psycopg's own commands take: one at a time per connection
            if conn not in self._prepared:
                await self._prepare(conn)
            try:
                result = await self._call(conn, params)
            except errors.Error as exc:
                if exc.sqlstate != _INVALID_NAME:
                    raise
                # Forgotten by the server: nothing ran, so preparing and sending again is safe.
                await self._prepare(conn)
                result = await self._call(conn, params)
        return [result.get_value(0, column) for column in range(result.nfields)]

    async def _prepare(self, conn: AsyncConnection[Any]) -> None:
        pgconn = conn.pgconn
        pgconn.send_prepare(self._name, self._sql)
        _checked(await conn.wait(generators.execute(pgconn)), conn, pq.ExecStatus.COMMAND_OK)
        self._prepared.add(conn)

    async def chunks(
        self,
        conn: AsyncConnection[Any],
        params: Sequence[bytes | None],
        size: int,
        into: Callable[[list[tuple[Any, ...]]], object],
    ) -> None:
        """Run the statement with text parameters and hand its rows to ``into``, as tuples of
        Python values, ``size`` rows at a time as they arrive (needs :data:`CHUNKED`).

        ``into`` may be handed the first rows while the server still sends the rest; it is not
        called once an error is known, which is raised when the answer is complete.
        """
        async with conn.lock:
            if conn not in self._prepared:
                await self._prepare(conn)
            try:
                await self._chunks(conn, params, size, into)
            except errors.Error as exc:
                if exc.sqlstate != _INVALID_NAME:
                    raise
                # Forgotten by the server: refused before any row, so sending again is safe.
                await self._prepare(conn)
                await self._chunks(conn, params, size, into)

    async def _chunks(
        self,
        conn: AsyncConnection[Any],
        params: Sequence[bytes | None],
        size: int,
        into: Callable[[list[tuple[Any, ...]]], object],
    ) -> None:
        pgconn = conn.pgconn
        pgconn.send_query_prepared(self._name, params, result_format=_BINARY)
        pgconn.set_chunked_rows_mode(size)
        await conn.wait(generators.send(pgconn))
        loading = Transformer(conn)
        first = True
        failed: pq.abc.PGresult | None = None
        # Every result up to the end of the answer is read, so the connection is left idle.
        while (result := await conn.wait(generators.fetch(pgconn))) is not None:
            if result.status == _FATAL:
                failed = result
            elif failed is None and result.ntuples:
                loading.set_pgresult(result, set_loaders=first)
                first = False
                into(loading.load_rows(0, result.ntuples, tuple))
        if failed is not None:
            raise errors.error_from_result(failed, encoding=conn.info.encoding)

    async def _call(
        self, conn: AsyncConnection[Any], params: Sequence[bytes | None]
    ) -> pq.abc.PGresult:
        pgconn = conn.pgconn
        pgconn.send_query_prepared(
            self._name, params, param_formats=[_BINARY] * len(params), result_format=_BINARY
        )
        result = _checked(await conn.wait(generators.execute(pgconn)), conn)
        if result.ntuples != 1:
            raise errors.InternalError(f"expected one row, got {result.ntuples}")
        return result


def _checked(
    results: list[pq.abc.PGresult],
    conn: AsyncConnection[Any],
    status: pq.ExecStatus = pq.ExecStatus.TUPLES_OK,
) -> pq.abc.PGresult:
    """The one result of a command, or the error the server answered with, as psycopg raises it."""
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding=conn.info.encoding)
    if len(results) != 1 or results[0].status != status:
        raise errors.InternalError(
            f"unexpected answer: {[pq.ExecStatus(r.status).name for r in results]}"
        )
    return results[0]
