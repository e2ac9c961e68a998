"""The inbox on each broker: a message delivered three times runs its command once; poison
messages are parked with the reason and do not hold back the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import aio_pika
import msgspec
import nats
import pytest
import redis.asyncio as aioredis
from accounts import Deposit, config
from nats.js.api import StreamConfig
from psycopg.conninfo import conninfo_to_dict
from test_postgres_faults import Proxy, through

from eventsignal import Signal
from eventsignal.publishing import CloudEvent
from eventsignal.publishing.inbox import Inbox, inbox_key, inbox_parked
from eventsignal.publishing.receivers.base import Receiver
from eventsignal.publishing.receivers.jetstream import JetStreamReceiver
from eventsignal.publishing.receivers.rabbitmq import RabbitMQReceiver
from eventsignal.publishing.receivers.redis import RedisStreamReceiver
from eventsignal.publishing.sinks.rabbitmq import RabbitMQSink
from eventsignal.publishing.sinks.redis import RedisStreamSink
from eventsignal.stores import PostgresStore, SQLiteStore


def message(ident: str, amount: int, kind: str = "bank.deposit") -> CloudEvent:
    return CloudEvent(
        specversion="1.0",
        id=ident,
        source="/bank",
        type=kind,
        subject="acc-1",
        datacontenttype="application/json",
        data=msgspec.Raw(msgspec.json.encode({"amount": amount})),
    )


# Three copies of one message, another message, a body that is no CloudEvent, and a message
# the decide function fails on.
MESSAGES = [message("m-1", 5)] * 3 + [message("m-2", 7), None, message("m-3", 1, "bank.boom")]


def decide(event: CloudEvent) -> tuple[str, object] | None:
    if event.type == "bank.boom":
        raise ValueError("cannot decide on this one")
    if event.type != "bank.deposit" or event.subject is None:
        return None
    return event.subject, Deposit(event.decode(dict)["amount"])


class Channel(Protocol):
    """Sends raw messages to one broker and makes a receiver for them."""

    async def send(self, events: list[CloudEvent | None]) -> None: ...

    def receiver(self, inbox: Inbox) -> Receiver: ...

    async def cleanup(self) -> None: ...


class NatsChannel:
    def __init__(self, url: str) -> None:
        self.url = url
        self.stream = f"inbox_{uuid4().hex[:10]}"

    async def send(self, events: list[CloudEvent | None]) -> None:
        nc = await nats.connect(self.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=self.stream, subjects=[f"{self.stream}.>"]))
        for event in events:  # no Nats-Msg-Id: the copies are not dropped by the server
            body = b"not json" if event is None else event.structured()
            await js.publish(f"{self.stream}.in", body)
        await nc.close()

    def receiver(self, inbox: Inbox) -> Receiver:
        return JetStreamReceiver(inbox, self.url, stream=self.stream)

    async def cleanup(self) -> None:
        nc = await nats.connect(self.url)
        await nc.jetstream().delete_stream(self.stream)
        await nc.close()


class RedisChannel:
    def __init__(self) -> None:
        self.stream = f"inbox:{uuid4().hex[:10]}"

    async def send(self, events: list[CloudEvent | None]) -> None:
        async with RedisStreamSink(stream=self.stream, mode="binary") as sink:
            for event in events:
                if event is None:
                    client = aioredis.Redis()
                    await client.xadd(self.stream, {"data": b"not json"})
                    await client.aclose()
                else:
                    await sink.publish([event])

    def receiver(self, inbox: Inbox) -> Receiver:
        return RedisStreamReceiver(inbox, stream=self.stream)

    async def cleanup(self) -> None:
        client = aioredis.Redis()
        await client.delete(self.stream)
        await client.aclose()


class RabbitChannel:
    def __init__(self) -> None:
        self.name = f"inbox-{uuid4().hex[:10]}"

    async def send(self, events: list[CloudEvent | None]) -> None:
        async with RabbitMQSink(exchange=self.name, queue=self.name) as sink:
            for event in events:
                if event is None:
                    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1/")
                    channel = await connection.channel()
                    await channel.default_exchange.publish(
                        aio_pika.Message(b"not json"), routing_key=self.name
                    )
                    await connection.close()
                else:
                    await sink.publish([event])

    def receiver(self, inbox: Inbox) -> Receiver:
        return RabbitMQReceiver(inbox, queue=self.name)

    async def cleanup(self) -> None:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1/")
        channel = await connection.channel()
        await channel.queue_delete(self.name)
        await channel.exchange_delete(self.name)
        await connection.close()


@pytest.fixture(params=["nats", "redis", "rabbitmq"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    found: Channel
    if request.param == "nats":
        found = NatsChannel(request.getfixturevalue("nats_url"))
    elif request.param == "redis":
        found = RedisChannel()
    else:
        found = RabbitChannel()
    yield found
    await found.cleanup()


async def drain(receiver: Receiver, count: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with receiver:
        while receiver.received < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert receiver.received == count


async def test_a_message_delivered_three_times_runs_its_command_once(
    channel: Channel, tmp_path: Path
) -> None:
    await channel.send(MESSAGES)
    async with (
        SQLiteStore(tmp_path / "events.db", migrate=True) as store,
        Signal(config(), store=store) as accounts,
    ):
        inbox = Inbox("bank", accounts, decide, create=True)
        await drain(channel.receiver(inbox), len(MESSAGES))
        account = await accounts.aggregate("acc-1")
        assert account.state.history == (5, 7)  # m-1 once, m-2 once
        events = await accounts.events("acc-1")
        assert [e.metadata["inbox_key"] for e in events] == ["/bank m-1", "/bank m-2"]
        parked = {p.id: p for p in await inbox_parked(store, "bank")}
        assert len(parked) == 2
        assert "cannot decide on this one" in parked["m-3"].reason
        [unreadable] = [p for key, p in parked.items() if key != "m-3"]
        assert "not a CloudEvent" in unreadable.reason
        assert unreadable.message == "not json"

        # Started again, nothing is left to receive; the same messages once more change nothing.
        await channel.send(MESSAGES[:4])
        await drain(channel.receiver(inbox), 4)
        assert (await accounts.aggregate("acc-1")).state.history == (5, 7)


async def test_a_key_lost_with_its_record_is_still_found_in_the_events(tmp_path: Path) -> None:
    async with (
        SQLiteStore(tmp_path / "events.db", migrate=True) as store,
        Signal(config(), store=store) as accounts,
    ):
        first = Inbox("first", accounts, decide, create=True)
        assert await first.handle(message("m-1", 5)) is True
        assert await first.handle(message("m-1", 5)) is False  # found in its records
        # A second inbox keeps no record of m-1 (as after a crash before the record was
        # written): the key in the command's events stops it.
        second = Inbox("second", accounts, decide, create=True)
        assert await second.handle(message("m-1", 5)) is False
        assert (await accounts.aggregate("acc-1")).state.history == (5,)
        assert inbox_key(message("x" * 300, 1)).startswith("sha256:")
        ignored: Any = message("m-9", 1, "bank.other")
        assert await second.handle(ignored) is False


@pytest.mark.postgres
async def test_a_store_outage_is_waited_out_not_parked(postgres_dsn: str) -> None:
    info = conninfo_to_dict(postgres_dsn)
    proxy = Proxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432))))
    await proxy.start()
    channel = RedisChannel()
    store = PostgresStore(through(proxy, postgres_dsn), migrate=True, max_size=3, timeout=1)
    try:
        async with store, Signal(config(), store=store, telemetry=None) as accounts:
            inbox = Inbox("bank", accounts, decide, create=True)
            receiver = channel.receiver(inbox)
            receiver.retry_delay = 0.1
            async with receiver:
                await proxy.stop()
                await channel.send([message("m-1", 5), message("m-2", 7)])
                await asyncio.sleep(1.5)  # the store is away: nothing is done, nothing parked
                assert receiver.received == 0
                await proxy.start()
                deadline = time.monotonic() + 20
                while receiver.received < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert (await accounts.aggregate("acc-1")).state.history == (5, 7)  # in order
            assert await inbox_parked(store, "bank") == []
    finally:
        await proxy.stop()
        await channel.cleanup()


async def test_the_same_message_at_the_same_instant_runs_once(tmp_path: Path) -> None:
    """Two processes (two Signals, two store objects) handle one message at the same moment, as
    when a broker redelivers it while the first consumer still works on it: the idempotency key
    stored with the command's events lets one of them run it."""
    async with (
        SQLiteStore(tmp_path / "events.db", migrate=True) as first_store,
        SQLiteStore(tmp_path / "events.db", migrate=True) as second_store,
        Signal(config(), store=first_store) as first,
        Signal(config(), store=second_store) as second,
    ):
        await first.create("acc-1", Deposit(1))
        inboxes = [Inbox("bank", signal, decide) for signal in (first, second, first, second)]
        ran = await asyncio.gather(*(inbox.handle(message("m-1", 5)) for inbox in inboxes))
        assert sorted(ran) == [False, False, False, True]
        assert (await second.aggregate("acc-1")).state.history == (1, 5)
