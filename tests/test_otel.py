"""OpenTelemetry: spans and metrics seen through the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from accounts import Deposit, Deposited, config
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventsignal import CommandRejected, Event, Signal
from eventsignal.cart.app import create_app
from eventsignal.otel import OpenTelemetry
from eventsignal.stores import MemoryStore, SQLiteStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner

account = config()


@dataclass(frozen=True)
class Unknown:
    """A command the account's handler does not know: an unexpected failure, not a rejection."""


@dataclass
class Sdk:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    otel: OpenTelemetry

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Sdk(
        spans,
        reader,
        OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider),
    )
    tracer_provider.shutdown()
    meter_provider.shutdown()


async def test_a_command_is_a_span_with_its_append_and_its_events_carry_the_trace(
    sdk: Sdk,
) -> None:
    async with Signal(account, instrumentation=sdk.otel) as signal:
        await signal.create("a-1")
        await signal.handle_command("a-1", Deposit(5))
        events = await signal.events("a-1")

    (command,) = sdk.finished("command Deposit")
    assert command.attributes is not None
    assert command.attributes["eventsignal.aggregate.name"] == "account"
    assert command.attributes["eventsignal.aggregate.id"] == "a-1"
    assert command.attributes["eventsignal.aggregate.version"] == 1
    assert command.attributes["eventsignal.outcome"] == "ok"
    appends = [s for s in sdk.finished("append") if s.parent is not None]
    append = next(s for s in appends if s.parent and s.parent.span_id == command.context.span_id)
    assert append.kind is SpanKind.CLIENT
    assert append.attributes is not None
    assert append.attributes["eventsignal.store"] == "MemoryStore"
    assert append.attributes["eventsignal.events"] == 1
    (deposited,) = events
    trace_id = f"{command.context.trace_id:032x}"
    span_id = f"{command.context.span_id:016x}"
    assert deposited.metadata["traceparent"].startswith(f"00-{trace_id}-{span_id}-")


async def test_rejections_and_failures_are_told_apart(sdk: Sdk) -> None:
    async with Signal(account, instrumentation=sdk.otel) as signal:
        await signal.create("a-1")
        with pytest.raises(CommandRejected):
            await signal.handle_command("a-1", Deposit(-1))
        with pytest.raises(TypeError):
            await signal.handle_command("a-1", Unknown())

    (rejected,) = sdk.finished("command Deposit")
    (failed,) = sdk.finished("command Unknown")
    assert rejected.attributes is not None
    assert failed.attributes is not None
    assert rejected.attributes["eventsignal.outcome"] == "rejected"
    assert rejected.status.status_code is StatusCode.UNSET  # a refusal, not a fault
    assert failed.attributes["eventsignal.outcome"] == "error"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.events
    assert failed.events[0].name == "exception"
    outcomes = {
        p.attributes["eventsignal.outcome"]: p.value for p in sdk.points("eventsignal.commands")
    }
    assert outcomes == {"ok": 1, "rejected": 1, "error": 1}
    (duration,) = [
        p
        for p in sdk.points("eventsignal.command.duration")
        if p.attributes["eventsignal.outcome"] == "ok"
    ]
    assert duration.count == 1
    assert duration.sum > 0


async def test_conflicts_are_counted(sdk: Sdk) -> None:
    store = MemoryStore()
    async with (
        Signal(account, store=store, instrumentation=sdk.otel) as first,
        Signal(account, store=store, instrumentation=sdk.otel) as second,
    ):
        await first.create("a-1")
        await second.aggregate("a-1")  # live in both pools at version 0
        await first.handle_command("a-1", Deposit(1))
        state = await second.handle_command("a-1", Deposit(2))  # conflicts, catches up, retries
    assert state.balance == 3
    (conflicts,) = sdk.points("eventsignal.conflicts")
    assert conflicts.value == 1


async def test_pool_gauges_and_rebuild_spans(sdk: Sdk) -> None:
    store = MemoryStore()
    async with Signal(account, store=store) as plain:
        await plain.create("a-1", Deposit(4))
    async with Signal(account, store=store, instrumentation=sdk.otel) as signal:
        await signal.aggregate("a-1")  # a miss: rebuilt from the store
        await signal.aggregate("a-1")  # a hit
        (rebuild,) = sdk.finished("rebuild")
        assert rebuild.attributes is not None
        assert rebuild.attributes["eventsignal.aggregate.version"] == 1
        (size,) = sdk.points("eventsignal.pool.size")
        (ratio,) = sdk.points("eventsignal.pool.hit_ratio")
    assert size.value == 1
    assert ratio.value == 0.5


async def test_a_subscription_continues_the_trace_of_the_command(sdk: Sdk, tmp_path: Any) -> None:
    seen: list[int] = []

    async def project(event: Event[Deposited]) -> None:
        seen.append(event.data.amount)

    subscription = sdk.otel.subscription(
        Subscription(name="deposits", handler=project, configs=[account])
    )
    store = SQLiteStore(tmp_path / "otel.db", migrate=True)
    async with (
        Signal(account, store=store, instrumentation=sdk.otel) as signal,
        SubscriptionRunner(subscription, store),
    ):
        await signal.create("a-1")
        await signal.handle_command("a-1", Deposit(7), wait_for=["deposits"])
    assert seen == [7]
    (command,) = sdk.finished("command Deposit")
    (process,) = sdk.finished("process deposits")
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == command.context.trace_id
    assert process.parent is not None
    assert process.parent.span_id == command.context.span_id


async def test_a_batched_subscription_links_each_event_to_its_command(
    sdk: Sdk, tmp_path: Any
) -> None:
    batches: list[int] = []

    async def publish(events: list[Event[Deposited]]) -> None:
        batches.append(len(events))

    subscription = sdk.otel.subscription(
        Subscription(name="outbox", handler=publish, configs=[account], batched=True)
    )
    store = SQLiteStore(tmp_path / "batched.db", migrate=True)
    async with Signal(account, store=store, instrumentation=sdk.otel) as signal:
        await signal.create("a-1")
        await signal.handle_command("a-1", Deposit(1))
        await signal.handle_command("a-1", Deposit(2))
    async with store, SubscriptionRunner(subscription, store):
        for _ in range(100):
            if sum(batches) >= 2:
                break
            await asyncio.sleep(0.02)
    assert sum(batches) == 2
    commands = {s.context.span_id for s in sdk.finished("command Deposit")}
    (batch, *_) = sdk.finished("process outbox")
    assert batch.kind is SpanKind.CONSUMER
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 2
    assert {link.context.span_id for link in batch.links} == commands


async def test_an_in_process_subscriber_continues_the_trace(sdk: Sdk) -> None:
    seen: list[int] = []

    def notify(event: Event[Deposited]) -> None:
        seen.append(event.data.amount)

    async with Signal(
        account, instrumentation=sdk.otel, subscribers=[sdk.otel.subscriber(notify)]
    ) as signal:
        await signal.create("a-1", Deposit(3))
        await signal.drain()
    assert seen == [3]
    (create,) = sdk.finished("command Deposit")
    (process,) = sdk.finished(
        "process test_an_in_process_subscriber_continues_the_trace.<locals>.notify"
    )
    assert process.parent is not None
    assert process.parent.span_id == create.context.span_id


async def test_without_a_configured_provider_nothing_is_recorded_or_stored() -> None:
    otel = OpenTelemetry()  # the API's global defaults: no SDK configured in this process
    assert not otel.tracing()
    assert not otel.metering()
    async with Signal(account, instrumentation=otel) as signal:
        await signal.create("a-1", Deposit(2))
        (event,) = await signal.events("a-1")
    assert "traceparent" not in event.metadata


async def test_the_cart_traces_a_request_through_its_command_to_the_revenue(
    sdk: Sdk, tmp_path: Any
) -> None:
    store = SQLiteStore(tmp_path / "cart.db", migrate=True)
    app = create_app(store=store, otel=sdk.otel)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cart") as client,
    ):
        created = await client.post("/carts")
        cart = created.headers["location"]
        data = {"sku": "pear", "quantity": "2", "price": "150"}
        assert (await client.post(f"{cart}/add", data=data)).status_code in (200, 303)
        sdk.spans.clear()
        assert (await client.post(f"{cart}/pay")).status_code == 303
        for _ in range(100):
            if sdk.finished("process cart-revenue"):
                break
            await asyncio.sleep(0.05)

    (pay,) = sdk.finished("command CompletePurchase")
    (process,) = sdk.finished("process cart-revenue")
    requests = [s for s in sdk.spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert requests, "the HTTP request has a server span"
    (request,) = [s for s in requests if s.context.trace_id == pay.context.trace_id]
    assert request.parent is None  # the root: one trace from the request to the projection
    assert process.context.trace_id == request.context.trace_id
