"""Events leave the store: CloudEvents to brokers, through durable subscriptions.

A :func:`publisher` is a durable subscription whose batched handler maps events to CloudEvents
(:class:`CloudEventMapper`, optionally through a :class:`Transform` to public integration events)
and hands them to a :class:`~eventsignal.publishing.sinks.Sink`; its checkpoint moves only once
the broker confirmed::

    from eventsignal.publishing.sinks.jetstream import JetStreamSink

    relay = publisher("to-nats", JetStreamSink("nats://127.0.0.1:4222"), configs=[cart_config])
    async with SubscriptionRunner(relay, store):
        ...

Delivery is at-least-once; the CloudEvent ``id`` (the event id) is the de-duplication key.
"""

from eventsignal.publishing.cloudevent import CloudEvent, Mode, sequence_of
from eventsignal.publishing.mapping import CloudEventMapper, default_source
from eventsignal.publishing.publisher import Publish, close_sink, publisher
from eventsignal.publishing.sinks.base import Sink, SinkLifecycle
from eventsignal.publishing.transform import Transform

__all__ = [
    "CloudEvent",
    "CloudEventMapper",
    "Mode",
    "Publish",
    "Sink",
    "SinkLifecycle",
    "Transform",
    "close_sink",
    "default_source",
    "publisher",
    "sequence_of",
]
