"""Publishers to each real broker: every event arrives once as a valid CloudEvent, in order per
aggregate; a broker outage (a proxy the test owns, cut and restored) loses nothing; refusals are
parked with the reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import uuid4

import pytest
from accounts import config
from publishing_brokers import (
    SECRET,
    Broker,
    NatsBroker,
    RabbitBroker,
    RedisBroker,
    WebhookBroker,
    check_delivered,
    received_all,
    run_commands,
)
from test_postgres_faults import Proxy

from eventsignal import BrokerUnavailable, EventRefused
from eventsignal.publishing import CloudEvent, close_sink, publisher
from eventsignal.publishing.sinks.webhook import TIMESTAMP, sign, verify
from eventsignal.stores import EventStore, SQLiteStore
from eventsignal.subscriptions import (
    SubscriptionRunner,
    parked_events,
    subscription_status,
    wait_until_processed,
)

BROKERS = ["nats", "redis", "rabbitmq", "http"]


async def make_broker(kind: str, request: pytest.FixtureRequest, mode: str | None = None) -> Broker:
    options = {} if mode is None else {"mode": mode}
    if kind == "nats":
        return NatsBroker(request.getfixturevalue("nats_url"), **options)
    if kind == "redis":
        return RedisBroker(**options)
    if kind == "rabbitmq":
        return RabbitBroker(**options)
    web = WebhookBroker(**options)
    await web.start()
    return web


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    found = await make_broker(request.param, request)
    yield found
    await found.cleanup()


MakeStore = Callable[[], Awaitable[EventStore]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """Makes the (unopened) store the test publishes from."""
    if request.param == "sqlite":

        async def sqlite() -> EventStore:
            return SQLiteStore(tmp_path / "events.db", migrate=True)

        return sqlite
    factory = request.getfixturevalue("postgres_store_factory")

    async def postgres() -> EventStore:
        made: EventStore = await factory()
        return made

    return postgres


async def test_n_commands_give_exactly_n_cloudevents(broker: Broker, make_store: MakeStore) -> None:
    store = await make_store()
    await store.open()
    try:
        await publish_and_check(broker, store)
    finally:
        await store.close()


async def publish_and_check(broker: Broker, store: EventStore) -> None:
    count = 60
    await run_commands(store, count)
    relay = publisher("relay", broker.sink(), configs=[config()], batch_size=16)
    async with SubscriptionRunner(relay, store):
        await wait_until_processed(store, "relay", await store.head_position(), timeout=20)
    await close_sink(relay)
    stored = list(await store.read_all(0, 1000))
    received = await received_all(broker, count)
    assert len(received) == count  # no outage: not even a duplicate
    check_delivered(received, stored)
    [status] = await subscription_status(store)
    assert (status.name, status.lag, status.parked) == ("relay", 0, 0)


async def test_an_outage_loses_nothing_and_the_relay_resumes_by_itself(
    broker: Broker, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    await store.open()
    proxy = Proxy(*broker.target)
    await proxy.start()
    relay = publisher(
        "relay", broker.sink(proxy.port), configs=[config()], batch_size=8, lease_ttl=3.0
    )
    try:
        async with SubscriptionRunner(relay, store) as runner:
            await run_commands(store, 20, seed=1)
            await wait_until_processed(store, "relay", await store.head_position(), timeout=20)
            await proxy.stop()
            await run_commands(store, 20, seed=2)
            deadline = time.monotonic() + 10
            while runner.error is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            assert isinstance(runner.error, BrokerUnavailable)
            [status] = await subscription_status(store)
            assert status.lag > 0  # nothing confirmed: the checkpoint waits
            await proxy.start()
            await wait_until_processed(store, "relay", await store.head_position(), timeout=30)
        assert await parked_events(store, "relay") == []  # an outage is never the events' fault
        stored = list(await store.read_all(0, 1000))
        check_delivered(await received_all(broker, 40), stored)
    finally:
        await close_sink(relay)
        await proxy.stop()
        await store.close()


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("nats", "binary"), ("redis", "binary"), ("rabbitmq", "structured"), ("http", "structured")],
)
async def test_the_other_mode_is_valid_too(
    kind: str, mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    broker = await make_broker(kind, request, mode)
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    await store.open()
    try:
        await run_commands(store, 10)
        relay = publisher("relay", broker.sink(), configs=[config()])
        async with SubscriptionRunner(relay, store):
            await wait_until_processed(store, "relay", 10, timeout=20)
        await close_sink(relay)
        check_delivered(await received_all(broker, 10), list(await store.read_all(0, 100)))
    finally:
        await store.close()
        await broker.cleanup()


async def test_jetstream_drops_a_republished_event_by_its_id(nats_url: str) -> None:
    broker = NatsBroker(nats_url)
    sink = broker.sink()
    event = CloudEvent(specversion="1.0", id="same-id", source="/t", type="t.Happened")
    other = CloudEvent(specversion="1.0", id="other-id", source="/t", type="t.Happened")
    try:
        async with sink:  # type: ignore[attr-defined]
            await sink.publish([event, other])
            await sink.publish([event, other, event])
        assert [e.get_id() for e in await broker.received()] == ["same-id", "other-id"]
    finally:
        await broker.cleanup()


async def test_refused_events_are_parked_with_the_reason(tmp_path: Path) -> None:
    web = WebhookBroker()
    await web.start()
    web.refuse = 3
    store = SQLiteStore(tmp_path / "events.db", migrate=True)
    await store.open()
    try:
        await run_commands(store, 6)
        relay = publisher("hook", web.sink(), configs=[config()], max_attempts=2, retry_delay=0.01)
        async with SubscriptionRunner(relay, store):
            await wait_until_processed(store, "hook", 6, timeout=20)
        await close_sink(relay)
        [parked] = await parked_events(store, "hook")
        assert parked.position == 3
        assert "EventRefused" in parked.error
        assert "HTTP 400" in parked.error
        assert len({e.get_id() for e in web.events}) == 5
    finally:
        await store.close()
        await web.cleanup()


async def test_an_unroutable_rabbitmq_message_is_refused() -> None:
    broker = RabbitBroker()
    sink = broker.sink()
    sink.queue = None  # type: ignore[attr-defined]  # no queue: nothing would receive it
    event = CloudEvent(specversion="1.0", id="lonely", source="/t", type="t.Happened")
    try:
        async with sink:  # type: ignore[attr-defined]
            with pytest.raises(EventRefused, match="lonely"):
                await sink.publish([event])
    finally:
        await broker.cleanup()


def test_webhook_signatures_verify_and_refuse_tampering_and_replays() -> None:
    body = b'{"amount": 5}'
    now = time.time()
    stamp = str(int(now))
    headers = {TIMESTAMP: stamp, "Eventsignal-Signature": sign(SECRET, stamp, body)}
    assert verify(SECRET, body, headers, now=now)
    assert verify(SECRET.encode(), body, {k.lower(): v for k, v in headers.items()}, now=now)
    assert not verify(SECRET, body + b" ", headers, now=now)
    assert not verify("another secret", body, headers, now=now)
    assert not verify(SECRET, body, headers, now=now + 301)
    assert not verify(SECRET, body, {TIMESTAMP: stamp}, now=now)


async def test_redis_trims_by_maxlen_and_an_error_reply_is_the_events_own() -> None:
    """``maxlen`` trims the stream as it grows; a command Redis refuses (the key is not a stream)
    fails the batch as the events' own error, and the sink's next batch goes through."""
    import redis.asyncio as aioredis
    import redis.exceptions

    from eventsignal.publishing.sinks.redis import RedisStreamSink

    stream = f"pub:{uuid4().hex[:10]}"
    events = [
        CloudEvent(specversion="1.0", id=f"e{n}", source="/t", type="t.Happened")
        for n in range(300)
    ]
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    sink = RedisStreamSink("redis://127.0.0.1:6379/0", stream=stream, maxlen=10)
    try:
        async with sink:
            await sink.publish(events)
            entries = await client.xrange(stream)
            assert 10 <= len(entries) < 300  # trimmed, approximately (whole nodes)
            assert [e[b"id"] for _, e in entries][-1] == b"e299"  # the newest kept
            await client.delete(stream)
            await client.set(stream, "not a stream")
            with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
                await sink.publish(events[:3])
            await client.delete(stream)
            await sink.publish(events[:3])
            assert [e[b"id"] for _, e in await client.xrange(stream)] == [b"e0", b"e1", b"e2"]
    finally:
        await client.delete(stream)
        await client.aclose()
