"""What an operator does to a JetStream stream beside the store, through the raw API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import nats
from nats.aio.client import Client

from eventsignal.stores import NatsStore


@asynccontextmanager
async def store_and_operator(
    servers: str | list[str], replicas: int = 1
) -> AsyncIterator[tuple[NatsStore, Client]]:
    """An open store on a new stream, patient (a 10 s timeout), and an operator's own
    connection beside it."""
    store = NatsStore(servers, stream=f"test_{uuid4().hex}", replicas=replicas, timeout=10.0)
    nc = await nats.connect(servers)
    try:
        async with store:
            yield store, nc
    finally:
        await nc.close()


async def _configure(nc: Client, stream: str, config: dict[str, Any]) -> None:
    answer = await nc.request(f"$JS.API.STREAM.UPDATE.{stream}", json.dumps(config).encode(), 5)
    assert "error" not in json.loads(answer.data), json.loads(answer.data)


@asynccontextmanager
async def changed_for(
    nc: Client, stream: str, seconds: float, **changes: Any
) -> AsyncIterator[asyncio.Event]:
    """``stream``'s configuration with ``changes`` now and as it was ``seconds`` later, the
    block running meanwhile. The event yielded is set just before the old configuration is
    asked back: a block that needed it set that event first.

    On one server, without ``allow_direct`` a direct get finds nobody to answer, and with other
    ``subjects`` a publish to the old ones finds nobody: as on a cluster still learning a new
    stream's subjects, or a server recovering its streams after a restart, but for certain and
    for as long as the test says. (On a cluster each server applies the change in its own time.)
    """
    info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", 5)).data)
    config = info["config"]
    await _configure(nc, stream, {**config, **changes})
    asked_back = asyncio.Event()

    async def restore() -> None:
        await asyncio.sleep(seconds)
        asked_back.set()
        await _configure(nc, stream, config)

    restoring = asyncio.create_task(restore())
    try:
        yield asked_back
    finally:
        await restoring
