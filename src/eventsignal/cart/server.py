"""Serving the cart app with uvicorn, and telling the user where to point the browser."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import uvicorn

from eventsignal.cart.app import create_app, database_url
from eventsignal.stores.urls import open_store, redact


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    url: str | None = None,
    *,
    out: TextIO = sys.stdout,
) -> None:
    """Run the app until interrupted. The store is opened first, so a wrong or unreachable
    database fails here with its own error instead of inside the server's startup."""
    asyncio.run(_serve(host, port, database_url(url), out))


async def _serve(host: str, port: int, url: str, out: TextIO) -> None:
    store = open_store(url)
    await store.open()
    try:
        config = uvicorn.Config(create_app(store=store), host=host, port=port, log_level="warning")
        server = uvicorn.Server(config)
        running = asyncio.create_task(server.serve())
        while not server.started and not running.done():  # noqa: ASYNC110 - no startup event
            await asyncio.sleep(0.02)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            print(f"Cart app on {redact(url)}", file=out)
            print(f"Open http://{shown}:{bound[1]}/ (Ctrl+C stops it)", file=out, flush=True)
        await running
        if not server.started:
            raise SystemExit(f"error: the cart app could not listen on {host}:{port}")
    finally:
        await store.close()
