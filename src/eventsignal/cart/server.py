"""Serving the cart app with uvicorn, and telling the user where to point the browser."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import TextIO

import uvicorn
from starlette.applications import Starlette

from eventsignal.cart.app import create_app, database_url
from eventsignal.stores import EventStore
from eventsignal.stores.urls import open_store, redact


class ServeError(Exception):
    """The app could not start; the message says why, in one line."""


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    url: str | None = None,
    *,
    out: TextIO = sys.stdout,
) -> None:
    """Run the app until interrupted.

    The port is bound and the store opened before the server starts, so a busy port or a wrong
    or unreachable database fails here with its own error, not as a server log traceback.
    """
    url = database_url(url)
    store = open_store(url)
    app = create_app(store=store)  # refuses a store it cannot run on, before anything starts
    listener = _listen(host, port)
    try:
        asyncio.run(_serve(app, store, listener, url, out))
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
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
    app: Starlette, store: EventStore, listener: socket.socket, url: str, out: TextIO
) -> None:
    await store.open()  # fails fast (StoreUnavailable, missing schema) before the server starts
    try:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
