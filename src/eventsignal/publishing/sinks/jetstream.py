"""A sink to a NATS JetStream stream (``pip install eventsignal[nats]``).

Each CloudEvent goes to ``<prefix>.<type>`` with its id as ``Nats-Msg-Id``, so the server itself
drops a republished event within the stream's duplicate window (two minutes by default). A batch
is written in one go and awaited as a whole: every message's ack, or
:class:`~eventsignal.BrokerUnavailable`. Structured mode by default; binary puts the attributes
in ``ce-`` headers, as the NATS binding of CloudEvents says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import StreamConfig

from eventsignal.domain.errors import BrokerUnavailable, ConfigurationError
from eventsignal.publishing.cloudevent import STRUCTURED_CONTENT_TYPE, CloudEvent, Mode
from eventsignal.publishing.sinks.base import SinkLifecycle

MSG_ID = "Nats-Msg-Id"
_UNREACHABLE = (
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    OSError,
    TimeoutError,
)


class JetStreamSink(SinkLifecycle):
    """Publishes to the JetStream stream ``stream`` on subjects ``<prefix>.<type>``.

    ``create=True`` makes the stream (subjects ``<prefix>.>``) when it is missing. ``timeout``
    bounds the wait for a batch's acks.
    """

    def __init__(
        self,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        stream: str = "eventsignal",
        prefix: str = "eventsignal",
        mode: Mode = "structured",
        create: bool = True,
        timeout: float = 5.0,
        **connect: Any,
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ConfigurationError(f"mode must be 'structured' or 'binary', not {mode!r}")
        self.servers = servers
        self.stream = stream
        self.prefix = prefix
        self.mode = mode
        self.create = create
        self.timeout = timeout
        self._connect = connect
        self._nc: Any = None
        self._js: Any = None

    async def open(self) -> None:
        if self._nc is not None:
            return
        try:
            nc = await nats.connect(
                self.servers,
                max_reconnect_attempts=-1,
                connect_timeout=self.timeout,
                allow_reconnect=True,
                **self._connect,
            )
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(f"cannot reach NATS at {self.servers}: {exc!r}") from exc
        js = nc.jetstream(timeout=self.timeout)
        if self.create:
            try:
                await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(StreamConfig(name=self.stream, subjects=[f"{self.prefix}.>"]))
            except _UNREACHABLE as exc:
                await nc.close()
                raise BrokerUnavailable(f"JetStream did not answer: {exc!r}") from exc
        self._nc, self._js = nc, js

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await nc.close()

    def subject(self, event: CloudEvent) -> str:
        return f"{self.prefix}.{event.type}"

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await self.open()
        js = self._js
        binary = self.mode == "binary"
        acks = []
        try:
            async with asyncio.timeout(self.timeout):
                for event in events:
                    if binary:
                        headers = event.headers()
                        headers[MSG_ID] = event.id
                        payload = event.body()
                    else:
                        headers = {MSG_ID: event.id, "content-type": STRUCTURED_CONTENT_TYPE}
                        payload = event.structured()
                    # Written in order on one connection: the stream stores them in this order.
                    acks.append(
                        await js.publish_async(self.subject(event), payload, headers=headers)
                    )
                await asyncio.gather(*acks)
        except _UNREACHABLE as exc:
            for ack in acks:
                ack.cancel()
            raise BrokerUnavailable(
                f"JetStream did not confirm {len(events)} events on {self.stream!r}: {exc!r}"
            ) from exc
