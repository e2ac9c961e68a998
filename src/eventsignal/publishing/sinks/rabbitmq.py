"""A sink to a RabbitMQ exchange (``pip install eventsignal[rabbitmq]``), with publisher confirms.

Each CloudEvent is published with its id as ``message_id`` (what consumers drop a republished
event by), persistent, with routing key ``<type>``. A batch is written in order on one channel
and awaited as a whole: every message confirmed, or :class:`~eventsignal.BrokerUnavailable`. A
message no queue receives (``mandatory``) is :class:`~eventsignal.EventRefused`, so nothing is
dropped silently; ``queue=`` declares a durable queue bound to every routing key, for a
consumer that is not there yet. Binary mode by default (``ce-`` headers, as the RabbitMQ
binding of the CloudEvents SDK reads them); structured on request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
import aiormq.exceptions
from pamqp.commands import Basic

from eventsignal.domain.errors import BrokerUnavailable, ConfigurationError, EventRefused
from eventsignal.publishing.cloudevent import STRUCTURED_CONTENT_TYPE, CloudEvent, Mode
from eventsignal.publishing.sinks.base import SinkLifecycle

_UNREACHABLE = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.DeliveryError,  # a nack: the broker lost it, try again
    ConnectionError,
    OSError,
    TimeoutError,
    RuntimeError,  # aio-pika while the robust connection is being restored
)


def properties(
    event: CloudEvent, mode: Mode = "binary"
) -> tuple[aiormq.spec.Basic.Properties, bytes]:
    """The AMQP properties and body of ``event``."""
    if mode == "structured":
        return (
            aiormq.spec.Basic.Properties(
                content_type=STRUCTURED_CONTENT_TYPE,
                message_id=event.id,
                delivery_mode=2,
            ),
            event.structured(),
        )
    headers: dict[str, Any] = event.headers()
    content_type = headers.pop("content-type", None)
    return (
        aiormq.spec.Basic.Properties(
            content_type=content_type,
            message_id=event.id,
            delivery_mode=2,
            headers=headers,
        ),
        event.body(),
    )


class RabbitMQSink(SinkLifecycle):
    """Publishes to the topic exchange ``exchange`` (declared durable if missing)."""

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        exchange: str = "eventsignal",
        queue: str | None = None,
        mode: Mode = "binary",
        timeout: float = 5.0,
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ConfigurationError(f"mode must be 'structured' or 'binary', not {mode!r}")
        self.url = url
        self.exchange = exchange
        self.queue = queue
        self.mode = mode
        self.timeout = timeout
        self._connection: Any = None
        self._channel: Any = None

    async def open(self) -> None:
        if self._connection is not None:
            return
        connection: Any = None
        try:
            connection = await aio_pika.connect_robust(self.url, timeout=self.timeout)
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            if self.queue is not None:
                queue = await channel.declare_queue(self.queue, durable=True)
                await queue.bind(exchange, routing_key="#")
        except _UNREACHABLE as exc:
            if connection is not None:
                await connection.close()
            raise BrokerUnavailable(f"cannot reach RabbitMQ: {exc!r}") from exc
        self._connection, self._channel = connection, channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await self.open()
        mode = self.mode
        sent: list[asyncio.Task[Any]] = []
        try:
            async with asyncio.timeout(self.timeout):
                # While the robust connection is being restored this waits: bounded too.
                channel = await self._channel.get_underlay_channel()
                for event in events:
                    props, body = properties(event, mode)
                    # Tasks take the channel's lock in creation order: the frames go out in order.
                    sent.append(
                        asyncio.ensure_future(
                            channel.basic_publish(
                                body,
                                exchange=self.exchange,
                                routing_key=event.type,
                                properties=props,
                                mandatory=True,
                            )
                        )
                    )
                confirmations = await asyncio.gather(*sent)
        except _UNREACHABLE as exc:
            for task in sent:
                task.cancel()
            raise BrokerUnavailable(
                f"RabbitMQ did not confirm {len(events)} events on {self.exchange!r}: {exc!r}"
            ) from exc
        for event, confirmation in zip(events, confirmations, strict=True):
            if not isinstance(confirmation, Basic.Ack):
                raise EventRefused(
                    f"RabbitMQ routed event {event.id} ({event.type}) to no queue of "
                    f"exchange {self.exchange!r}: bind one, or pass queue="
                )
