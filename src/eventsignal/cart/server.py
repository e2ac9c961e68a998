"""Serving the cart app with uvicorn (see :mod:`eventsignal.web.serving` for how it listens)."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import TextIO

import uvicorn

from eventsignal.cart.app import create_app, database_url
from eventsignal.cart.publishing import publish_url
from eventsignal.stores import EventStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.stores.urls import open_store, redact
from eventsignal.web.serving import ServeError, listen, serve_until_stopped, server_config
from eventsignal.web.timeouts import DEFAULT_REQUEST_TIMEOUT

__all__ = ["ServeError", "listen", "serve", "server_config"]


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    url: str | None = None,
    *,
    out: TextIO = sys.stdout,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    currency: str | None = None,
    publish_to: str | None = None,
) -> None:
    """Run the app until interrupted.

    The port is bound and the store opened before the server starts, so a busy port or a wrong
    or unreachable database fails here with its own error, not as a server log traceback.
    A client gets ``request_timeout`` seconds to send each request, headers and body (see
    :mod:`eventsignal.web.timeouts`).
    """
    url = database_url(url)
    store = open_store(url)
    # Refuses a store it cannot run on, or a sink URL it cannot use, before anything starts.
    app = create_app(store=store, currency=currency, publish_to=publish_url(publish_to))
    config = server_config(app, request_timeout)
    listener = listen(host, port)
    try:
        asyncio.run(_serve(config, store, listener, url, out))
    finally:
        listener.close()


async def _serve(
    config: uvicorn.Config, store: EventStore, listener: socket.socket, url: str, out: TextIO
) -> None:
    await store.open()  # fails fast (StoreUnavailable, missing schema) before the server starts
    try:
        if isinstance(store, SubscriptionStore):
            await store.setup_subscriptions()  # so does a store that cannot keep the revenue's
        await serve_until_stopped(config, listener, f"Cart app on {redact(url)}", out)
    finally:
        await store.close()
