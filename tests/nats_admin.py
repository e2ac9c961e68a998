"""What an operator does to a JetStream stream beside the store, through the raw API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client


async def _configure(nc: Client, stream: str, config: dict[str, Any]) -> None:
    answer = await nc.request(f"$JS.API.STREAM.UPDATE.{stream}", json.dumps(config).encode(), 5)
    assert "error" not in json.loads(answer.data), json.loads(answer.data)


@asynccontextmanager
async def changed_for(
    nc: Client, stream: str, seconds: float, **changes: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """``stream``'s configuration with ``changes`` now and as it was ``seconds`` later (the task
    yielded, done by then), the block running meanwhile.

    Without ``allow_direct`` a direct get finds nobody to answer; with other ``subjects`` a
    publish to the old ones finds nobody: as on a cluster still learning a new stream's
    subjects, but for as long as the test says.
    """
    info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", 5)).data)
    config = info["config"]
    await _configure(nc, stream, {**config, **changes})

    async def restore() -> None:
        await asyncio.sleep(seconds)
        await _configure(nc, stream, config)

    restoring = asyncio.create_task(restore())
    try:
        yield restoring
    finally:
        await restoring
