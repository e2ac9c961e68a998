"""The NATS JetStream adapter (``pip install eventsignal[nats]``): one stream, a subject per
aggregate, the server's expected-sequence check for optimistic concurrency."""

from eventsignal.stores.nats.store import NatsStore

__all__ = ["NatsStore"]
