"""Receiving CloudEvents from a JetStream stream, through a durable pull consumer named after
the inbox: the server remembers what was acknowledged, across restarts."""

from __future__ import annotations

from functools import partial
from typing import Any

import nats
import nats.errors

from eventsignal.publishing.inbox import Inbox, receive
from eventsignal.publishing.receivers.base import Receiver


class JetStreamReceiver(Receiver):
    """Feeds ``inbox`` the messages of ``stream`` (on ``subject``, default all of them)."""

    def __init__(
        self,
        inbox: Inbox,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        stream: str,
        subject: str | None = None,
        batch: int = 100,
        **connect: Any,
    ) -> None:
        super().__init__(inbox)
        self.servers = servers
        self.stream = stream
        self.subject = subject
        self.batch = batch
        self._connect = connect

    async def run(self) -> None:
        nc = await nats.connect(self.servers, max_reconnect_attempts=-1, **self._connect)
        try:
            js = nc.jetstream()
            subscription = await js.pull_subscribe(
                self.subject or "", durable=self.inbox.name, stream=self.stream
            )
            while True:
                try:
                    messages = await subscription.fetch(self.batch, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                for message in messages:
                    verdict = await self.settle(
                        partial(receive, self.inbox, message.headers, message.data or b""),
                        message.in_progress,
                    )
                    if verdict == "parked":
                        await message.term()
                    else:
                        await message.ack_sync()
        finally:
            await nc.close()
