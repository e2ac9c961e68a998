"""A sink to a Redis stream (``pip install eventsignal[redis]``).

A batch is one pipeline of ``XADD`` commands, confirmed by their replies. Redis keeps no
de-duplication window, so the entry's ``id`` field (the CloudEvent id) is what consumers drop a
republished event by. Structured mode stores the envelope in an ``event`` field beside ``id``;
binary mode stores each attribute in a ``ce-`` field and the data in ``data``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from eventsignal.domain.errors import BrokerUnavailable, ConfigurationError
from eventsignal.publishing.cloudevent import CloudEvent, Mode
from eventsignal.publishing.sinks.base import SinkLifecycle

_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def fields(event: CloudEvent, mode: Mode = "structured") -> dict[str, str | bytes]:
    """The fields of the stream entry of ``event``."""
    if mode == "structured":
        return {"id": event.id, "event": event.structured()}
    found: dict[str, str | bytes] = dict(event.headers())
    found["data"] = event.body()
    return found


class RedisStreamSink(SinkLifecycle):
    """Appends to the Redis stream ``stream`` (``maxlen`` trims it, approximately)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379",
        *,
        stream: str = "eventsignal",
        mode: Mode = "structured",
        maxlen: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ConfigurationError(f"mode must be 'structured' or 'binary', not {mode!r}")
        self.url = url
        self.stream = stream
        self.mode = mode
        self.maxlen = maxlen
        self.timeout = timeout
        self._client: Any = None

    async def open(self) -> None:
        if self._client is None:
            # No per-read socket timeout (it costs a timer per reply): a batch has one, below.
            self._client = aioredis.from_url(  # type: ignore[no-untyped-call]
                self.url, socket_connect_timeout=self.timeout
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await self.open()
        pipe = self._client.pipeline(transaction=False)
        mode = self.mode
        for event in events:
            pipe.xadd(
                self.stream,
                fields(event, mode),
                maxlen=self.maxlen,
                approximate=True,
            )
        try:
            async with asyncio.timeout(self.timeout):
                await pipe.execute()
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(
                f"Redis did not confirm {len(events)} events on {self.stream!r}: {exc!r}"
            ) from exc
