"""The brokers the publishing tests publish to, each the real server on this machine (or, for
NATS, the tests' own server; for webhooks, an HTTP server the test starts), with a way to read
back everything a sink delivered, parsed by the CloudEvents SDK."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any, Protocol
from uuid import uuid4

import aio_pika
import nats
import redis.asyncio as aioredis
import uvicorn
from accounts import Deposit, config
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventsignal import Signal
from eventsignal.publishing import Sink, sequence_of
from eventsignal.publishing.sinks.jetstream import JetStreamSink
from eventsignal.publishing.sinks.rabbitmq import RabbitMQSink
from eventsignal.publishing.sinks.redis import RedisStreamSink
from eventsignal.publishing.sinks.webhook import WebhookSink, verify
from eventsignal.stores import EventStore, StoredEvent

REDIS = ("127.0.0.1", 6379)
RABBITMQ = ("127.0.0.1", 5672)
SECRET = "test-secret"
_FORMAT = JSONFormat()


def parse_http(headers: dict[str, str], body: bytes) -> Any:
    """A CloudEvent from HTTP-style headers (``ce-`` or structured ``content-type``) and body."""
    return ce_http.from_http(ce_http.HTTPMessage(headers=headers, body=body), _FORMAT)


class Broker(Protocol):
    kind: str
    target: tuple[str, int]

    def sink(self, port: int | None = None) -> Sink:
        """A sink to this broker, or through a proxy on ``port``."""
        ...

    def url(self, port: int | None = None) -> str:
        """The sink's URL for ``eventsignal publish --to``."""
        ...

    async def received(self) -> list[Any]:
        """Every CloudEvent on the broker so far, in the broker's order, parsed by the SDK."""
        ...

    async def count(self) -> int:
        """How many messages the broker holds (copies included)."""
        ...

    async def cleanup(self) -> None: ...


class NatsBroker:
    kind = "nats"

    def __init__(self, url: str, mode: str = "structured") -> None:
        host, port = url.removeprefix("nats://").split(":")
        self.target = (host, int(port))
        self.stream = f"pub_{uuid4().hex[:10]}"
        self.mode = mode

    def _server(self, port: int | None) -> str:
        return f"nats://{self.target[0]}:{port or self.target[1]}"

    def sink(self, port: int | None = None) -> Sink:
        return JetStreamSink(
            self._server(port),
            stream=self.stream,
            prefix=self.stream,
            mode=self.mode,  # type: ignore[arg-type]
            timeout=2.0,
        )

    def url(self, port: int | None = None) -> str:
        return f"{self._server(port)}?stream={self.stream}&prefix={self.stream}"

    async def received(self) -> list[Any]:
        nc = await nats.connect(self._server(None))
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                return []
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(self.stream, seq)
                found.append(parse_http(dict(msg.headers or {}), msg.data or b""))
            return found
        finally:
            await nc.close()

    async def count(self) -> int:
        nc = await nats.connect(self._server(None))
        try:
            info = await nc.jetstream().stream_info(self.stream)
            return int(info.state.messages)
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()

    async def cleanup(self) -> None:
        nc = await nats.connect(self._server(None))
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(self.stream)
        await nc.close()


class RedisBroker:
    kind = "redis"
    target = REDIS

    def __init__(self, mode: str = "structured") -> None:
        self.stream = f"pub:{uuid4().hex[:10]}"
        self.mode = mode

    def url(self, port: int | None = None) -> str:
        return f"redis://{REDIS[0]}:{port or REDIS[1]}/0?stream={self.stream}"

    def sink(self, port: int | None = None) -> Sink:
        return RedisStreamSink(
            f"redis://{REDIS[0]}:{port or REDIS[1]}/0",
            stream=self.stream,
            mode=self.mode,  # type: ignore[arg-type]
            timeout=2.0,
        )

    async def received(self) -> list[Any]:
        client = aioredis.Redis(host=REDIS[0], port=REDIS[1])
        try:
            entries = await client.xrange(self.stream)
        finally:
            await client.aclose()
        found = []
        for _, raw in entries:
            fields = {k.decode(): v for k, v in raw.items()}
            if "event" in fields:
                parsed = parse_http(
                    {"content-type": "application/cloudevents+json"}, fields["event"]
                )
                assert parsed.get_id() == fields["id"].decode()
            else:
                data = fields.pop("data")
                parsed = parse_http({k: v.decode() for k, v in fields.items()}, data)
            found.append(parsed)
        return found

    async def count(self) -> int:
        client = aioredis.Redis(host=REDIS[0], port=REDIS[1])
        try:
            return int(await client.xlen(self.stream))
        finally:
            await client.aclose()

    async def cleanup(self) -> None:
        client = aioredis.Redis(host=REDIS[0], port=REDIS[1])
        await client.delete(self.stream)
        await client.aclose()


class RabbitBroker:
    kind = "rabbitmq"
    target = RABBITMQ

    def __init__(self, mode: str = "binary") -> None:
        name = f"pub-{uuid4().hex[:10]}"
        self.exchange = name
        self.queue = name
        self.mode = mode

    def _url(self, port: int | None) -> str:
        return f"amqp://guest:guest@{RABBITMQ[0]}:{port or RABBITMQ[1]}/"

    def url(self, port: int | None = None) -> str:
        return f"{self._url(port)}?exchange={self.exchange}&queue={self.queue}"

    def sink(self, port: int | None = None) -> Sink:
        return RabbitMQSink(
            self._url(port),
            exchange=self.exchange,
            queue=self.queue,
            mode=self.mode,  # type: ignore[arg-type]
            timeout=2.0,
        )

    async def received(self) -> list[Any]:
        connection = await aio_pika.connect(self._url(None))
        found = []
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, durable=True, passive=True)
            # Read without acknowledging: the messages stay for the next look.
            while (message := await queue.get(no_ack=False, fail=False, timeout=2)) is not None:
                headers = {k: str(v) for k, v in (message.headers or {}).items()}
                parsed = ce_rabbitmq.from_rabbitmq(
                    ce_rabbitmq.RabbitMQMessage(
                        headers=headers, content_type=message.content_type, body=message.body
                    ),
                    _FORMAT,
                )
                assert parsed.get_id() == message.message_id
                found.append(parsed)
        finally:
            await connection.close()  # unacknowledged messages go back to the queue
        return found

    async def count(self) -> int:
        connection = await aio_pika.connect(self._url(None))
        try:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(self.queue, durable=True, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return 0
            return int(queue.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def cleanup(self) -> None:
        connection = await aio_pika.connect(self._url(None))
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(self.queue)
            await channel.exchange_delete(self.exchange)
        await connection.close()


class WebhookBroker:
    """An HTTP server the test runs: it checks each request's signature, answers 204, and keeps
    what it got (``refuse`` makes it answer 400 to events whose data has that amount)."""

    kind = "http"

    def __init__(self, mode: str = "binary") -> None:
        self.mode = mode
        self.events: list[Any] = []
        self.unsigned = 0
        self.refuse: int | None = None
        self.target = ("127.0.0.1", 0)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        if not verify(SECRET, body, request.headers):
            self.unsigned += 1
            return Response(status_code=401)
        event = parse_http(dict(request.headers), body)
        if self.refuse is not None and (event.get_data() or {}).get("amount") == self.refuse:
            return Response("no such amount", status_code=400)
        self.events.append(event)
        return Response(status_code=204)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/events", self._receive, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn has no startup event
            await asyncio.sleep(0.01)
        self.target = ("127.0.0.1", self._server.servers[0].sockets[0].getsockname()[1])

    def url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.target[1]}/events"

    def sink(self, port: int | None = None) -> Sink:
        return WebhookSink(
            self.url(port),
            secret=SECRET,
            mode=self.mode,  # type: ignore[arg-type]
            timeout=2.0,
            attempts=2,
            backoff=0.05,
        )

    async def received(self) -> list[Any]:
        return list(self.events)

    async def count(self) -> int:
        return len(self.events)

    async def cleanup(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task


async def run_commands(store: EventStore, count: int, seed: int = 0) -> None:
    """``count`` commands spread over a few accounts, one event each."""
    rng = random.Random(seed)
    async with Signal(config(), store=store) as signal:
        for n in range(count):
            account = f"acc-{rng.randrange(5)}"
            if await store.exists("account", account):
                await signal.handle_command(account, Deposit(n + 1))
            else:
                await signal.create(account, Deposit(n + 1))


def check_delivered(received: list[Any], stored: list[StoredEvent]) -> None:
    """Each stored event arrived, valid, with its attributes; several copies only with the same
    id and content; in order per aggregate."""
    by_id: dict[str, Any] = {}
    for event in received:
        first = by_id.setdefault(event.get_id(), event)
        assert event.get_data() == first.get_data()
        assert event.get_extension("sequence") == first.get_extension("sequence")
    assert set(by_id) == {str(e.id) for e in stored}
    for record in stored:
        event = by_id[str(record.id)]
        assert event.get_specversion() == "1.0"
        assert event.get_source() == "/account"
        assert event.get_type() == "account.Deposited"
        assert event.get_subject() == record.aggregate_id
        assert event.get_time() == record.timestamp
        assert event.get_extension("sequence") == sequence_of(record.position)
        assert int(event.get_extension("aggregateversion")) == record.version
        assert event.get_extension("partitionkey") == record.aggregate_id
    seen: dict[str, int] = {}
    for event in received:  # first copies, in the broker's order
        if by_id[event.get_id()] is not event:
            continue
        version = int(event.get_extension("aggregateversion"))
        assert version == seen.get(event.get_subject(), 0) + 1, "out of order"
        seen[event.get_subject()] = version


async def received_all(broker: Broker, count: int, within: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        found = await broker.received()
        if len({e.get_id() for e in found}) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)
