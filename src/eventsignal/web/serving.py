"""Serving a web app with uvicorn, and telling the user where to point the browser.

The listening socket is made here rather than by uvicorn, so that a busy port fails before
anything starts. It must be created as a TCP socket (``IPPROTO_TCP``, not protocol 0): asyncio
only sets ``TCP_NODELAY`` on accepted sockets of that protocol, and without it Nagle's algorithm
holds each response body until the client acknowledges the headers, about 40 ms per request on
a keep-alive connection.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TextIO

import uvicorn
from starlette.applications import Starlette

from eventsignal.web.timeouts import DEFAULT_REQUEST_TIMEOUT, with_request_timeout


class ServeError(Exception):
    """The app could not start; the message says why, in one line."""


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


async def serve_until_stopped(
    config: uvicorn.Config, listener: socket.socket, banner: str, out: TextIO
) -> None:
    """Serve on ``listener``; once started, print ``banner`` and the address to open."""
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not running.done():  # noqa: ASYNC110 - no startup event
        await asyncio.sleep(0.02)
    if server.started:
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(banner, file=out)
        print(f"Open http://{shown}:{port}/ (Ctrl+C stops it)", file=out, flush=True)
    try:
        await running
    except SystemExit:
        raise ServeError("the app did not start; the log above says why") from None
