"""Receiving CloudEvents from a RabbitMQ queue (binary mode with ``ce-`` headers, or
structured), one unacknowledged message at a time so they are handled in queue order."""

from __future__ import annotations

from functools import partial

import aio_pika

from eventsignal.publishing.inbox import Inbox, receive
from eventsignal.publishing.receivers.base import Receiver


class RabbitMQReceiver(Receiver):
    """Feeds ``inbox`` the messages of the durable queue ``queue``."""

    def __init__(
        self, inbox: Inbox, url: str = "amqp://guest:guest@127.0.0.1:5672/", *, queue: str
    ) -> None:
        super().__init__(inbox)
        self.url = url
        self.queue = queue

    async def run(self) -> None:
        connection = await aio_pika.connect_robust(self.url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1)
            queue = await channel.declare_queue(self.queue, durable=True)
            async with queue.iterator() as messages:
                async for message in messages:
                    headers = dict(message.headers or {})
                    if message.content_type:
                        headers.setdefault("content-type", message.content_type)
                    verdict = await self.settle(partial(receive, self.inbox, headers, message.body))
                    if verdict == "parked":
                        await message.reject(requeue=False)  # to the dead-letter exchange, if any
                    else:
                        await message.ack()
        finally:
            await connection.close()
