"""Where publishers send CloudEvents: one small module per broker over one :class:`Sink`
protocol. Each broker module needs its client library (an extra), so it is imported by name:
``from eventsignal.publishing.sinks.jetstream import JetStreamSink``."""

from eventsignal.publishing.sinks.base import Sink, SinkLifecycle

__all__ = ["Sink", "SinkLifecycle"]
