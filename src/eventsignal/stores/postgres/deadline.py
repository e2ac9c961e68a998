"""Deadlines for PostgreSQL commands: a command without an answer in time fails, and its
connection is cut.

A stalled connection (the socket open, no bytes moving: a dead NAT entry, a partition, a frozen
server) gives psycopg nothing to fail on, so without a deadline a command waits forever.
Cancelling the command is no cure: psycopg then asks the server to cancel the query and waits
again for the connection to settle, seconds more on a dead path. A timer that shuts the socket
down instead makes the command in flight fail at once, as if the server had closed it; the pool
then replaces the connection. TCP keepalives and ``tcp_user_timeout`` catch a peer that stops
acknowledging; only a deadline catches one that acknowledges and never answers.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection


class Deadline:
    """Cuts ``conn`` unless the block it guards ends within ``seconds``; ``None`` is no limit.

    ``expired`` says whether it did cut, so the caller can tell a stall from a lost connection.
    ``on_expiry`` runs when it cuts (the store replaces its other connections then).
    """

    __slots__ = ("_conn", "_handle", "_on_expiry", "expired", "seconds")

    def __init__(
        self,
        conn: AsyncConnection[Any],
        seconds: float | None,
        on_expiry: Callable[[], object] | None = None,
    ) -> None:
        self.seconds = seconds
        self.expired = False
        self._conn = conn
        self._on_expiry = on_expiry
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> Deadline:
        if self.seconds is not None:
            self._handle = asyncio.get_running_loop().call_later(self.seconds, self._cut)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _cut(self) -> None:
        self.expired = True
        cut(self._conn)
        if self._on_expiry is not None:
            self._on_expiry()


def cut(conn: AsyncConnection[Any]) -> None:
    """Shut ``conn``'s socket down: whatever waits on it fails now, the pool discards it."""
    if conn.closed:
        return
    try:
        # A duplicate descriptor, so that closing it leaves libpq's own descriptor alone:
        # shutdown acts on the socket both share.
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.OperationalError):
        return  # no socket left to cut
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    finally:
        sock.close()
