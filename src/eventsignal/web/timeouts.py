"""A deadline for receiving each request, which uvicorn does not set on its own.

uvicorn's ``timeout_keep_alive`` only runs while a connection sits idle between requests, and
any byte received stops it: a client that opens a connection and sends nothing, or sends half a
request line and waits, or trickles its headers or body a byte at a time, holds the connection
(and its memory) for as long as it likes. Enough such clients exhaust the server.

:class:`RequestTimeoutProtocol` is uvicorn's own h11 protocol with one addition: a request must be
received in full, headers and body, within ``request_timeout`` seconds of the connection opening
or of the previous response ending, or the connection is closed. The clock stops once the request
has arrived, so a slow handler or a long response stream is never cut short by it.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from eventsignal.domain.errors import ConfigurationError

DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds; an honest client sends a form in well under one


class RequestTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request takes too long to arrive."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    _deadline: float | None = None  # loop time by which the request must be in; None: not timing
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._stop_clock_if_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # IDLE: waiting for the next request. A clock that is not running: a pipelined request
        # is partly in. A running clock: the answered request's body is still arriving.
        if self.conn.their_state is h11.IDLE or self._deadline is None:
            self._start_clock()
        self._stop_clock_if_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    # Starting and stopping the clock only sets a number: a keep-alive connection answering
    # thousands of requests a second must not create and cancel a timer for each of them. One
    # timer per connection checks the number when it fires, and follows a clock restarted since.

    def _start_clock(self) -> None:
        self._deadline = self.loop.time() + self.request_timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._check_clock)

    def _stop_clock(self) -> None:
        self._deadline = None

    def _check_clock(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_clock)
            return
        self._deadline = None
        self._too_slow()

    def _stop_clock_if_received(self) -> None:
        # DONE: the whole request is in. MUST_CLOSE, CLOSED, ERROR, SWITCHED_PROTOCOL: the
        # connection is ending or no longer speaks HTTP/1.1, and uvicorn handles it from here.
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._stop_clock()

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.logger.info("%s took too long to send its request; closing", self._who())
            self.transport.close()

    def _who(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


def with_request_timeout(seconds: float) -> type[RequestTimeoutProtocol]:
    """The protocol class to hand to ``uvicorn.Config(http=...)`` for a given deadline."""
    if not seconds > 0:
        raise ConfigurationError(
            f"the request timeout must be a positive number of seconds, not {seconds}"
        )

    class Bounded(RequestTimeoutProtocol):
        request_timeout = float(seconds)

    return Bounded
