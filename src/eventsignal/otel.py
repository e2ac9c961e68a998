"""OpenTelemetry traces and metrics (the ``eventsignal[otel]`` extra).

``otel = OpenTelemetry()`` uses the global tracer and meter providers (or the ones given), and is
handed to what it should watch::

    signal = Signal(config, store=store, instrumentation=otel)
    runner = SubscriptionRunner(otel.subscription(projection), store)
    policy = otel.subscriber(send_welcome_mail)          # an in-process subscriber

A command runs in a span (aggregate name and id, command, new version, outcome) with a child span
for its append; the command's trace context is stored in each event's metadata as
``traceparent``, and a subscription's span for an event is that context's child, so one trace runs
from an HTTP request through the command to every projection of its events. Metrics: commands and
conflicts counted, command duration, pool size and hit ratio, and subscription lag once
:meth:`OpenTelemetry.watch` reads it.

While neither provider is configured (the API's defaults), a command costs one check more than
without instrumentation: nothing is recorded and no ``traceparent`` is stored. A provider set
later is noticed within a second.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from eventsignal.domain.errors import CommandRejected, ConcurrencyError
from eventsignal.domain.events import Event
from eventsignal.instrumentation import Append, Create
from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions.status import subscription_status
from eventsignal.subscriptions.subscription import Subscription

T = TypeVar("T")

logger = logging.getLogger("eventsignal")

SCOPE = "eventsignal"
RECHECK_SECONDS = 1.0  # how soon a provider set after start is noticed


def _is_real_tracer_provider(provider: object) -> bool:
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _is_real_meter_provider(provider: object) -> bool:
    # The API's stand-in until a provider is set has no public name; it is the one that is
    # neither the no-op provider nor anything an SDK made.
    return not isinstance(provider, metrics.NoOpMeterProvider) and not type(
        provider
    ).__name__.startswith("_Proxy")


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, CommandRejected):
        return "rejected"
    if isinstance(exc, ConcurrencyError):
        return "conflict"
    return "error"


class OpenTelemetry:
    """Spans and metrics for Signals, subscriptions and subscribers.

    ``tracer_provider`` and ``meter_provider`` default to the global ones, looked up on each
    command so that a provider set after this object was made is used.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        from eventsignal import __version__

        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._commands = meter.create_counter(
            "eventsignal.commands", unit="{command}", description="Commands handled, by outcome."
        )
        self._conflicts = meter.create_counter(
            "eventsignal.conflicts",
            unit="{conflict}",
            description="Appends refused because another writer stored first.",
        )
        self._duration = meter.create_histogram(
            "eventsignal.command.duration",
            unit="s",
            description="From a command's arrival to its events being stored (or its failure).",
        )
        meter.create_observable_gauge(
            "eventsignal.pool.size",
            callbacks=[self._observe_pool_sizes],
            unit="{aggregate}",
            description="Live aggregates in a Signal's pool.",
        )
        meter.create_observable_gauge(
            "eventsignal.pool.hit_ratio",
            callbacks=[self._observe_hit_ratios],
            unit="1",
            description="Share of aggregate lookups the pool answered without the store.",
        )
        meter.create_observable_gauge(
            "eventsignal.subscription.lag",
            callbacks=[self._observe_lags],
            unit="{event}",
            description="Global positions between a subscription's checkpoint and the head.",
        )
        self._signals: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lags: dict[str, int] = {}
        self._tracing_on = self._metering_on = False
        self._recheck_at = 0.0

    @property
    def tracer_provider(self) -> trace.TracerProvider | None:
        """The provider given, or ``None`` for the global one."""
        return self._tracer_provider

    # Whether anything listens

    @property
    def active(self) -> bool:
        """Whether a real tracer or meter provider is there. A provider, once set, stays (the
        API sets the global ones once), so only "not yet" is looked at again, once a second."""
        if self._tracing_on or self._metering_on:
            return True
        now = time.monotonic()
        if now < self._recheck_at:
            return False
        self._recheck_at = now + RECHECK_SECONDS
        self._tracing_on = _is_real_tracer_provider(
            self._tracer_provider or trace.get_tracer_provider()
        )
        self._metering_on = _is_real_meter_provider(
            self._meter_provider or metrics.get_meter_provider()
        )
        return self._tracing_on or self._metering_on

    def tracing(self) -> bool:
        """Whether spans are recorded (a real tracer provider is there)."""
        return self.active and self._tracing_on

    def metering(self) -> bool:
        """Whether metrics are recorded (a real meter provider is there)."""
        return self.active and self._metering_on

    # The Signal's side (eventsignal.instrumentation.Instrumentation)

    def attach(self, signal: Any) -> None:
        """Watch a Signal's pool for the pool gauges (held weakly)."""
        self._signals.add(signal)

    async def command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        command: object,
        metadata: Mapping[str, str],
        run: Callable[[Mapping[str, str]], Awaitable[T]],
    ) -> T:
        """Run one command in a span (when tracing) and count and time it (when metering)."""
        tracing = self._tracing_on
        metering = self._metering_on
        name = "create" if command is None else type(command).__name__
        attributes = {
            "eventsignal.aggregate.name": aggregate_name,
            "eventsignal.aggregate.id": aggregate_id,
            "eventsignal.command": name,
        }
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            if not tracing:
                return await run(metadata)
            with self._tracer.start_as_current_span(
                f"command {name}",
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                carrier = dict(metadata)
                propagate.inject(carrier)
                try:
                    return await run(carrier)
                except BaseException as exc:
                    failure = exc
                    _fail(span, exc, expected=isinstance(exc, CommandRejected))
                    raise
                finally:
                    span.set_attribute("eventsignal.outcome", _outcome(failure))
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if metering:
                measured = {
                    "eventsignal.aggregate.name": aggregate_name,
                    "eventsignal.outcome": _outcome(failure),
                }
                self._commands.add(1, measured)
                self._duration.record(time.perf_counter() - started, measured)

    def wrap_append(self, store: Any, append: Append) -> Append:
        """The store's ``append`` in a child span of the command, counting conflicts."""
        system = type(store).__name__

        async def traced_append(
            aggregate_name: str, aggregate_id: str, expected: int, records: Sequence[StoredEvent]
        ) -> Sequence[int]:
            return await self._storing(
                system,
                aggregate_name,
                expected,
                records,
                append(aggregate_name, aggregate_id, expected, records),
            )

        return traced_append

    def wrap_create(self, store: Any, create: Create) -> Create:
        """The store's ``create`` in a child span of the command."""
        system = type(store).__name__

        async def traced_create(
            aggregate_name: str, aggregate_id: str, records: Sequence[StoredEvent]
        ) -> Sequence[int]:
            return await self._storing(
                system, aggregate_name, 0, records, create(aggregate_name, aggregate_id, records)
            )

        return traced_create

    async def _storing(
        self,
        system: str,
        aggregate_name: str,
        expected: int,
        records: Sequence[StoredEvent],
        stored: Awaitable[Sequence[int]],
    ) -> Sequence[int]:
        command_span = trace.get_current_span()
        try:
            if not command_span.is_recording():
                return await stored
            with self._tracer.start_as_current_span(
                "append",
                kind=SpanKind.CLIENT,
                attributes={
                    "eventsignal.store": system,
                    "eventsignal.aggregate.name": aggregate_name,
                    "eventsignal.expected_version": expected,
                    "eventsignal.events": len(records),
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    positions = await stored
                except BaseException as exc:
                    _fail(span, exc, expected=isinstance(exc, ConcurrencyError))
                    raise
                if positions:
                    span.set_attribute("eventsignal.position", positions[-1])
            command_span.set_attribute("eventsignal.aggregate.version", expected + len(records))
            return positions
        except ConcurrencyError:
            if self._metering_on:
                self._conflicts.add(1, {"eventsignal.aggregate.name": aggregate_name})
            raise

    async def rebuild(
        self, aggregate_name: str, aggregate_id: str, run: Callable[[], Awaitable[T]]
    ) -> T:
        """Run the rebuild of one aggregate in a span."""
        if not self.tracing():
            return await run()
        with self._tracer.start_as_current_span(
            "rebuild",
            attributes={
                "eventsignal.aggregate.name": aggregate_name,
                "eventsignal.aggregate.id": aggregate_id,
            },
        ) as span:
            rebuilt = await run()
            version = getattr(rebuilt, "version", None)
            if isinstance(version, int):
                span.set_attribute("eventsignal.aggregate.version", version)
            return rebuilt

    # Readers of events

    def subscription(self, subscription: Subscription) -> Subscription:
        """The same subscription, its handler run in a span per event, continuing the trace of
        the command that stored the event; a batched handler (a publisher) runs in a span per
        batch, linked to the trace of each of its events."""
        handler: Any = subscription.handler
        name = subscription.name
        if subscription.batched:

            async def traced_batch(events: list[Event[Any]]) -> None:
                with self._processing_batch(name, events):
                    result = handler(events)
                    if inspect.isawaitable(result):
                        await result

            wrapped: Any = functools.wraps(handler)(traced_batch)
        elif subscription.takes_transaction:

            async def traced_in_transaction(event: Event[Any], tx: Any) -> None:
                with self._processing(name, event):
                    result = handler(event, tx)
                    if inspect.isawaitable(result):
                        await result

            wrapped = functools.wraps(handler)(traced_in_transaction)
        else:

            async def traced(event: Event[Any]) -> None:
                with self._processing(name, event):
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result

            wrapped = functools.wraps(handler)(traced)
        return replace(
            subscription,
            handler=wrapped,
            configs=tuple(subscription.serializers.values()),
            transactional=subscription.takes_transaction,
        )

    def subscriber(self, subscriber: Callable[[Event[Any]], object]) -> Callable[[Event[Any]], Any]:
        """An in-process subscriber (``Signal(subscribers=...)``), run in a span per event."""
        name = getattr(subscriber, "__qualname__", None) or type(subscriber).__qualname__

        @functools.wraps(subscriber)
        async def traced(event: Event[Any]) -> None:
            with self._processing(name, event):
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result

        return traced

    @functools.cached_property
    def _no_span(self) -> Any:
        return _NoSpan()

    def _processing(self, reader: str, event: Event[Any]) -> Any:
        if not self.tracing():
            return self._no_span
        metadata = event.metadata
        parent = propagate.extract(metadata) if "traceparent" in metadata else None
        return self._tracer.start_as_current_span(
            f"process {reader}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "eventsignal",
                "messaging.operation.type": "process",
                "messaging.destination.name": reader,
                "messaging.message.id": str(event.id),
                "eventsignal.aggregate.name": event.aggregate_name,
                "eventsignal.aggregate.id": event.aggregate_id,
                "eventsignal.aggregate.version": event.version,
                "eventsignal.position": event.position,
                "eventsignal.event": event.name,
            },
        )

    def _processing_batch(self, reader: str, events: Sequence[Event[Any]]) -> Any:
        if not self.tracing():
            return self._no_span
        links = []
        for event in events:
            if "traceparent" in event.metadata:
                context = trace.get_current_span(
                    propagate.extract(event.metadata)
                ).get_span_context()
                if context.is_valid:
                    links.append(trace.Link(context, {"messaging.message.id": str(event.id)}))
        return self._tracer.start_as_current_span(
            f"process {reader}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "eventsignal",
                "messaging.operation.type": "process",
                "messaging.destination.name": reader,
                "messaging.batch.message_count": len(events),
            },
        )

    # Gauges

    async def watch(
        self,
        store: EventStore,
        *,
        checkpoints: SubscriptionStore | None = None,
        interval: float = 10.0,
    ) -> None:
        """Read every subscription's lag from ``store`` every ``interval`` seconds, for the
        ``eventsignal.subscription.lag`` gauge; runs until cancelled (start it as a task)."""
        while True:
            try:
                self.observe_lags(await subscription_status(store, checkpoints=checkpoints))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("could not read subscription lag", exc_info=True)
            await asyncio.sleep(interval)

    def observe_lags(self, statuses: Iterable[Any]) -> None:
        """Record lags read elsewhere (anything with ``name`` and ``lag``)."""
        self._lags = {status.name: status.lag for status in statuses}

    def _observe_pool_sizes(self, options: CallbackOptions) -> Iterator[Observation]:
        for signal in list(self._signals):
            yield Observation(signal.pool_size, {"eventsignal.aggregate.name": signal.name})

    def _observe_hit_ratios(self, options: CallbackOptions) -> Iterator[Observation]:
        for signal in list(self._signals):
            stats = signal.pool_stats
            lookups = stats.hits + stats.misses
            if lookups:
                yield Observation(stats.hits / lookups, {"eventsignal.aggregate.name": signal.name})

    def _observe_lags(self, options: CallbackOptions) -> Iterator[Observation]:
        for name, lag in self._lags.items():
            yield Observation(lag, {"eventsignal.subscription": name})


def _fail(span: Span, exc: BaseException, *, expected: bool) -> None:
    """Mark a span failed; an expected refusal (a rejection, a conflict) is recorded, not an
    error of the system."""
    span.set_attribute("error.type", type(exc).__qualname__)
    if not expected:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)))


class _NoSpan:
    """What a reader runs in while nothing traces: enters and leaves, nothing more."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
