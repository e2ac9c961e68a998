"""Receiving CloudEvents from a Redis stream through a consumer group named after the inbox.

An entry is acknowledged (``XACK``) once handled or parked; one read but not acknowledged (the
process died) stays pending and is read again first (this consumer's pending entries come first
on every round)."""

from __future__ import annotations

from functools import partial
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from eventsignal.publishing.inbox import Inbox, Verdict, receive
from eventsignal.publishing.receivers.base import Receiver


class RedisStreamReceiver(Receiver):
    """Feeds ``inbox`` the entries of ``stream`` (as written by a RedisStreamSink)."""

    def __init__(
        self,
        inbox: Inbox,
        url: str = "redis://127.0.0.1:6379",
        *,
        stream: str,
        consumer: str = "inbox",
        batch: int = 100,
    ) -> None:
        super().__init__(inbox)
        self.url = url
        self.stream = stream
        self.consumer = consumer
        self.batch = batch

    async def run(self) -> None:
        client = aioredis.from_url(self.url)
        group = self.inbox.name
        try:
            try:
                await client.xgroup_create(self.stream, group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            while True:
                # Pending entries of this consumer first (left by a retry or a crash).
                found = await client.xreadgroup(
                    group, self.consumer, {self.stream: "0"}, count=self.batch
                )
                if not found or not found[0][1]:
                    found = await client.xreadgroup(
                        group, self.consumer, {self.stream: ">"}, count=self.batch, block=1000
                    )
                for _, entries in found or []:
                    for entry_id, fields in entries:
                        await self.settle(partial(self._one, fields))
                        await client.xack(self.stream, group, entry_id)
        finally:
            await client.aclose()

    async def _one(self, raw: dict[Any, Any]) -> Verdict:
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        if "event" in fields:
            return await receive(self.inbox, None, fields["event"])
        body = fields.pop("data", b"")
        return await receive(self.inbox, fields, body)
