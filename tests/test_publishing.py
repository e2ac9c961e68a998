"""CloudEvents mapping, transforms and batched subscriptions (brokers: test_publishing_sinks)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from accounts import Deposit, Deposited, Withdraw, Withdrawn, config
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import ConfigurationError, Event, Signal
from eventsignal.publishing import CloudEvent, CloudEventMapper, Transform, sequence_of
from eventsignal.stores import MemoryStore
from eventsignal.subscriptions import (
    Subscription,
    SubscriptionRunner,
    parked_events,
    processed_position,
    wait_until_processed,
)


async def _events(metadata: dict[str, str] | None = None) -> list[Event[Any]]:
    store = MemoryStore()
    async with Signal(config(), store=store) as signal:
        await signal.create("acc-1")
        await signal.handle_command("acc-1", Deposit(30), metadata=metadata)
        await signal.handle_command("acc-1", Withdraw(5))
        await signal.create("acc-2")
        await signal.handle_command("acc-2", Deposit(7))
        records = await store.read_all(0, 100)
        return [_envelope(signal, r) for r in records]


def _envelope(signal: Signal[Any, Any], record: Any) -> Event[Any]:
    from eventsignal.serialization import envelope

    return envelope(record, signal.serializer.decode(record))


def sdk_structured(event: CloudEvent) -> Any:
    message = ce_http.HTTPMessage(
        headers={"content-type": "application/cloudevents+json"}, body=event.structured()
    )
    return ce_http.from_structured(message, JSONFormat())


def sdk_binary(event: CloudEvent) -> Any:
    return ce_http.from_binary(
        ce_http.HTTPMessage(headers=event.headers(), body=event.body()), JSONFormat()
    )


async def test_every_event_maps_to_a_valid_cloudevent_in_both_modes() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    events = await _events({"traceparent": trace})
    mapper = CloudEventMapper()
    for event in events:
        cloud = mapper(event)
        assert cloud is not None
        for parsed in (sdk_structured(cloud), sdk_binary(cloud)):
            assert parsed.get_id() == str(event.id)
            assert parsed.get_source() == "/account"
            assert parsed.get_type() == f"account.{type(event.data).__name__}"
            assert parsed.get_subject() == event.aggregate_id
            assert parsed.get_time() == event.timestamp
            assert parsed.get_datacontenttype() == "application/json"
            assert parsed.get_data() == {"amount": event.data.amount}
            extensions = parsed.get_extension
            assert extensions("sequence") == sequence_of(event.position)
            assert int(extensions("aggregateversion")) == event.version
            assert extensions("partitionkey") == event.aggregate_id
            assert extensions("traceparent") == (
                trace if event.version == 1 and event.aggregate_id == "acc-1" else None
            )
    # Text order of ``sequence`` is position order, past a change in the number of digits.
    assert sequence_of(9) < sequence_of(10) < sequence_of(2**63 - 1)


async def test_source_and_type_are_configurable() -> None:
    events = await _events()
    by_map = CloudEventMapper(
        source={"account": "https://bank.example/accounts"}, types={"Deposited": "bank.deposit"}
    )
    by_function = CloudEventMapper(source=lambda name: f"urn:{name}", types=lambda e: e.name)
    deposit = next(e for e in events if isinstance(e.data, Deposited))
    withdrawal = next(e for e in events if isinstance(e.data, Withdrawn))
    first, second = by_map(deposit), by_map(withdrawal)
    assert first is not None
    assert second is not None
    assert (first.source, first.type) == ("https://bank.example/accounts", "bank.deposit")
    assert second.type == "account.Withdrawn"  # not in the mapping: the default
    third = by_function(deposit)
    assert third is not None
    assert (third.source, third.type) == ("urn:account", "Deposited")


@dataclass(frozen=True)
class MoneyIn:
    account: str
    cents: int


async def test_a_transform_renames_drops_and_skips() -> None:
    def public(event: Event[Any]) -> object | None:
        if isinstance(event.data, Deposited):
            return MoneyIn(event.aggregate_id, event.data.amount * 100)
        return None

    transform = Transform(public, emits={"bank.money-in": MoneyIn})
    mapper = CloudEventMapper(transform=transform)
    events = await _events()
    published = [c for c in map(mapper, events) if c is not None]
    assert [sdk_structured(c).get_data() for c in published] == [
        {"account": "acc-1", "cents": 3000},
        {"account": "acc-2", "cents": 700},
    ]
    assert {c.type for c in published} == {"bank.money-in"}
    schema = transform.schemas()["bank.money-in"]
    assert "MoneyIn" in str(schema)

    leaky = CloudEventMapper(transform=Transform(lambda e: e.data, emits=[MoneyIn]))
    with pytest.raises(ConfigurationError, match=r"Deposited.*not among the types"):
        leaky(events[0])
    with pytest.raises(ConfigurationError, match="declare"):
        Transform(public, emits=[])


async def test_a_batched_handler_gets_batches_and_a_bad_event_alone_is_parked() -> None:
    store = MemoryStore()
    batches: list[list[int]] = []

    async def handler(events: list[Event[Any]]) -> None:
        if any(getattr(e.data, "amount", 0) == 13 for e in events):
            raise ValueError("unlucky amount")
        batches.append([e.position for e in events])

    subscription = Subscription(
        name="batches",
        handler=handler,
        configs=[config()],
        batched=True,
        batch_size=4,
        max_attempts=2,
        retry_delay=0.01,
    )
    async with Signal(config(), store=store) as signal:
        for n in range(10):
            await signal.create(f"a{n}", Deposit(13 if n == 5 else 1))
        head = await store.head_position()
        async with SubscriptionRunner(subscription, store):
            await wait_until_processed(store, "batches", head)
    delivered = [p for batch in batches for p in batch]
    assert delivered == [p for p in range(1, 11) if p != 6]
    assert max(len(b) for b in batches) == 4  # whole batches, when nothing failed
    [parked] = await parked_events(store, "batches")
    assert parked.position == 6
    assert "unlucky amount" in parked.error
    with pytest.raises(ConfigurationError, match="batched"):
        Subscription(
            name="x", handler=handler, configs=[config()], batched=True, transactional=True
        )


def test_a_sink_url_names_the_broker_and_its_options() -> None:
    from eventsignal.publishing.sinks.jetstream import JetStreamSink
    from eventsignal.publishing.sinks.rabbitmq import RabbitMQSink
    from eventsignal.publishing.sinks.redis import RedisStreamSink
    from eventsignal.publishing.sinks.webhook import WebhookSink
    from eventsignal.publishing.urls import sink_from_url

    nats = sink_from_url("nats://127.0.0.1:4222?stream=orders&prefix=shop", mode="binary")
    assert isinstance(nats, JetStreamSink)
    assert (nats.servers, nats.stream, nats.prefix, nats.mode) == (
        "nats://127.0.0.1:4222",
        "orders",
        "shop",
        "binary",
    )
    redis = sink_from_url("rediss://h:6380/2?stream=events&maxlen=1000&ssl_cert_reqs=none")
    assert isinstance(redis, RedisStreamSink)
    assert (redis.url, redis.stream, redis.maxlen) == (
        "rediss://h:6380/2?ssl_cert_reqs=none",
        "events",
        1000,
    )
    rabbit = sink_from_url("amqp://u:p@h/vhost?exchange=x&queue=q")
    assert isinstance(rabbit, RabbitMQSink)
    assert (rabbit.url, rabbit.exchange, rabbit.queue) == ("amqp://u:p@h/vhost", "x", "q")
    hook = sink_from_url("https://example.com/hooks?token=1", secret="s")
    assert isinstance(hook, WebhookSink)
    assert (hook.url, hook.secret, hook.mode) == (
        "https://example.com/hooks?token=1",
        "s",
        "binary",
    )
    with pytest.raises(ConfigurationError, match="kafka"):
        sink_from_url("kafka://h:9092")
    with pytest.raises(ConfigurationError, match="mode"):
        sink_from_url("redis://h", mode="both")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    amounts=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=40),
    bad=st.sets(st.integers(min_value=1, max_value=9), max_size=3),
    batch_size=st.integers(min_value=1, max_value=12),
    partitions=st.integers(min_value=1, max_value=3),
)
def test_batched_delivery_misses_nothing_and_parks_only_the_bad(
    amounts: list[int], bad: set[int], batch_size: int, partitions: int
) -> None:
    """Whatever the batches and partitions, every event but the refused ones is delivered, in
    order per aggregate (first copies), and exactly the refused ones are parked."""

    async def scenario() -> None:
        store = MemoryStore()
        firsts: dict[str, list[int]] = {}
        seen: set[str] = set()

        def handler(events: list[Event[Any]]) -> None:
            if any(e.data.amount in bad for e in events):
                raise ValueError("refused amount")
            for e in events:
                if str(e.id) not in seen:
                    seen.add(str(e.id))
                    firsts.setdefault(e.aggregate_id, []).append(e.version)

        subscription = Subscription(
            name="batches",
            handler=handler,
            configs=[config()],
            batched=True,
            batch_size=batch_size,
            partitions=partitions,
            max_attempts=1,
            retry_delay=0,
        )
        async with Signal(config(), store=store, telemetry=None) as signal:
            for n, amount in enumerate(amounts):
                account = f"a{n % 4}"
                if n < 4:
                    await signal.create(account, Deposit(amount))
                else:
                    await signal.handle_command(account, Deposit(amount))
            async with SubscriptionRunner(subscription, store):
                await wait_until_processed(store, "batches", len(amounts), timeout=20)
        stored = await store.read_all(0, 1000)
        good = [r for r in stored if msgspec.json.decode(r.data)["amount"] not in bad]
        assert seen == {str(r.id) for r in good}
        for account, versions in firsts.items():
            assert versions == sorted(versions), account
        parked = await parked_events(store, "batches")
        assert sorted(p.position for p in parked) == sorted(
            r.position for r in stored if r not in good
        )

    asyncio.run(scenario())


async def test_a_batched_checkpoint_never_passes_a_batch_still_being_delivered() -> None:
    """The checkpoint of batch k commits while batch k+1 is delivered: each event still goes out
    once, and the checkpoint never moves past an event whose batch has not returned."""
    store = MemoryStore()
    delivered: list[int] = []
    checkpoints: list[tuple[int, int]] = []  # (first position of a batch, checkpoint then)
    held = asyncio.Event()
    release = asyncio.Event()

    async def handler(events: list[Event[Any]]) -> None:
        reached = await processed_position(store, "pipelined") or 0
        checkpoints.append((events[0].position, reached))
        if events[0].position == 9:  # the third batch waits until the test has looked
            held.set()
            await release.wait()
        delivered.extend(e.position for e in events)

    subscription = Subscription(
        name="pipelined", handler=handler, configs=[config()], batched=True, batch_size=4
    )
    async with Signal(config(), store=store) as signal:
        for n in range(14):
            await signal.create(f"a{n}", Deposit(1))
        async with SubscriptionRunner(subscription, store):
            await asyncio.wait_for(held.wait(), 10)
            await asyncio.sleep(0.1)  # time enough for any commit to land
            assert await processed_position(store, "pipelined") == 8
            release.set()
            await wait_until_processed(store, "pipelined", 14)
        assert await processed_position(store, "pipelined") == 14
    assert delivered == list(range(1, 15))  # nothing read twice
    assert all(checkpoint < first for first, checkpoint in checkpoints)
