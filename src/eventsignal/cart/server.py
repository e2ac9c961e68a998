"""Serving the cart app with uvicorn, and telling the user where to point the browser.

The listening socket is made here rather than by uvicorn, so that a busy port fails before
anything starts. It must be created as a TCP socket (``IPPROTO_TCP``, not protocol 0): asyncio
only sets ``TCP_NODELAY`` on accepted sockets of that protocol, and without it Nagle's algorithm
holds each response body until the client acknowledges the headers, about 40 ms per request on
a keep-alive connection.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import TextIO

import uvicorn
from starlette.applications import Starlette

from eventsignal.cart.app import create_app, database_url
from eventsignal.cart.publishing import publish_url
from eventsignal.cart.timeouts import DEFAULT_REQUEST_TIMEOUT, with_request_timeout
from eventsignal.stores import EventStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.stores.urls import open_store, redact


class ServeError(Exception):
    """The app could not start; the message says why, in one line."""


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    url: str | None = None,
    *,
    out: TextIO = sys.stdout,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    publish_to: str | None = None,
) -> None:
    """Run the app until interrupted.

    The port is bound and the store opened before the server starts, so a busy port or a wrong
    or unreachable database fails here with its own error, not as a server log traceback.
    A client gets ``request_timeout`` seconds to send each request, headers and body (see
    :mod:`eventsignal.cart.timeouts`).
    """
    url = database_url(url)
    store = open_store(url)
    # Refuses a store it cannot run on, or a sink URL it cannot use, before anything starts.
    app = create_app(store=store, publish_to=publish_url(publish_to))
    config = server_config(app, request_timeout)
    listener = listen(host, port)
    try:
        asyncio.run(_serve(config, store, listener, url, out))
    finally:
        listener.close()


def server_config(
    app: Starlette, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
) -> uvicorn.Config:
    """uvicorn's settings for serving ``app``: quiet logs and a deadline for every request."""
    return uvicorn.Config(app, http=with_request_timeout(request_timeout), log_level="warning")


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``, ready for ``uvicorn.Server.serve(sockets=...)``."""
    try:
        family, kind, protocol, _, _ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, protocol)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener


async def _serve(
    config: uvicorn.Config, store: EventStore, listener: socket.socket, url: str, out: TextIO
) -> None:
    await store.open()  # fails fast (StoreUnavailable, missing schema) before the server starts
    try:
        if isinstance(store, SubscriptionStore):
            await store.setup_subscriptions()  # so does a store that cannot keep the revenue's
        server = uvicorn.Server(config)
        running = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not running.done():  # noqa: ASYNC110 - no startup event
            await asyncio.sleep(0.02)
        if server.started:
            host, port = listener.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"Cart app on {redact(url)}", file=out)
            print(f"Open http://{shown}:{port}/ (Ctrl+C stops it)", file=out, flush=True)
        try:
            await running
        except SystemExit:
            raise ServeError("the cart app did not start; the log above says why") from None
    finally:
        await store.close()
