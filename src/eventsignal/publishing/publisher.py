"""Publishers: durable subscriptions whose handler sends CloudEvents to a sink.

Being subscriptions, they get checkpoints, partitions (per-aggregate order kept), retries,
parking, status and lag from the usual runners. The handler is batched: each read of the store
becomes one :meth:`Sink.publish`, and the checkpoint moves past it only after the broker
confirmed. Delivery is at-least-once: a crash or an outage between the broker's confirmation and
the checkpoint's commit publishes those events again, with the same CloudEvent ``id``, which
brokers that de-duplicate (JetStream's ``Nats-Msg-Id``) and consumers use to drop them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.events import Event
from eventsignal.publishing.mapping import CloudEventMapper, Source, TypeName
from eventsignal.publishing.raw import verbatim
from eventsignal.publishing.sinks.base import Sink
from eventsignal.publishing.transform import Transform
from eventsignal.serialization import EventSerializer
from eventsignal.subscriptions.subscription import Subscription

DEFAULT_BATCH = 500


class Publish:
    """The batched handler of a publisher: map each event, skip the ``None`` ones, publish.

    The sink is opened on first use (and again after :meth:`close`).
    """

    __slots__ = ("_opened", "mapper", "sink")

    def __init__(self, sink: Sink, mapper: CloudEventMapper) -> None:
        self.sink = sink
        self.mapper = mapper
        self._opened = False

    async def __call__(self, events: list[Event[Any]]) -> None:
        mapper = self.mapper
        cloudevents = [c for c in map(mapper, events) if c is not None]
        if not cloudevents:
            return
        if not self._opened:
            await self.sink.open()
            self._opened = True
        await self.sink.publish(cloudevents)

    async def close(self) -> None:
        """Close the sink, if this handler opened it."""
        if self._opened:
            self._opened = False
            await self.sink.close()


def publisher(
    name: str,
    sink: Sink,
    *,
    configs: Iterable[AggregateConfig[Any, Any] | EventSerializer],
    event_names: Collection[str] | None = None,
    source: Source | None = None,
    types: TypeName | None = None,
    transform: Transform | None = None,
    batch_size: int = DEFAULT_BATCH,
    **options: Any,
) -> Subscription:
    """A durable subscription named ``name`` publishing the events of ``configs`` to ``sink``.

    Run it like any subscription (``async with SubscriptionRunner(publisher(...), store):``).
    ``event_names`` narrows what is published; ``source``, ``types`` and ``transform`` shape the
    CloudEvents (see :class:`CloudEventMapper`). ``options`` are :class:`Subscription`'s
    (``partitions``, ``start``, ``max_attempts``...). The handler (``subscription.handler``) is a
    :class:`Publish`; :func:`close_sink` closes the sink when the runners are done.
    """
    handler = Publish(sink, CloudEventMapper(source=source, types=types, transform=transform))
    return Subscription(
        name=name,
        handler=handler,
        # Unless something looks at the event objects, the data goes out as it was stored.
        configs=configs if transform is not None or callable(types) else verbatim(configs),
        event_names=event_names,
        batched=True,
        batch_size=batch_size,
        **options,
    )


async def close_sink(subscription: Subscription) -> None:
    """Close the sink of a publisher made by :func:`publisher` (once its runners stopped)."""
    handler = subscription.handler
    if not isinstance(handler, Publish):
        raise ConfigurationError(f"subscription {subscription.name!r} is not a publisher")
    await handler.close()
