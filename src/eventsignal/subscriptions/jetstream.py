"""Retired: subscriptions on NATS run on :class:`~eventsignal.subscriptions.SubscriptionRunner`.

``JetStreamRunner`` kept a subscription's position in a durable JetStream consumer (one message
in flight, no partitions, no exactly-once read models). The generic runner now does everything
it did and more on a :class:`~eventsignal.stores.NatsStore` alone: its checkpoints, leases,
parked events and read-model documents live in the store's ``<stream>_state`` bucket, it reads
the stream in batches through one pull consumer, and ``partitions=N`` shares the work between
processes with each aggregate's events in order and a dead member's partitions taken over.

The old names stay importable so that code using them stops with a message that says what to
use instead, rather than an ``ImportError``.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgspec

from eventsignal.domain.errors import ConfigurationError

_MOVED = (
    "SubscriptionRunner keeps its position in the NATS store's '<stream>_state' bucket and "
    "starts where subscription.start says; the durable consumer JetStreamRunner used (named "
    "after the subscription) is not read: start with start='end' if the consumer had caught "
    "up, and delete the consumer once the new runner runs"
)


def _retired(old: str, instead: str) -> NoReturn:
    raise ConfigurationError(f"{old} is retired: use {instead}. {_MOVED}.")


class JetStreamStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Retired with :class:`JetStreamRunner`; :func:`~eventsignal.subscriptions.subscription_status`
    reports a subscription on NATS as on any store."""

    name: str
    position: int
    head: int
    lag: int
    in_flight: int
    parked: int


class JetStreamRunner:
    """Retired: raises :class:`~eventsignal.ConfigurationError` naming its replacement,
    ``SubscriptionRunner(subscription, store)``."""

    def __init__(self, subscription: Any, store: Any, **_: Any) -> None:
        _retired("JetStreamRunner", "SubscriptionRunner(subscription, store)")


async def jetstream_status(store: Any, subscription: str) -> JetStreamStatus:
    """Retired: use :func:`~eventsignal.subscriptions.subscription_status`."""
    _retired("jetstream_status()", "subscription_status(store)")


async def jetstream_parked(store: Any, subscription: str) -> list[Any]:
    """Retired: use :func:`~eventsignal.subscriptions.parked_events`."""
    _retired("jetstream_parked()", "parked_events(store, subscription)")


def consumer_name(subscription: str) -> str:
    """Retired: subscriptions on NATS no longer have a durable consumer of their own."""
    _retired("consumer_name()", "SubscriptionRunner, which keeps no durable consumer")


def parked_bucket(store: Any) -> str:
    """Retired: parked events live in the store's subscription state (``<stream>_state``)."""
    _retired("parked_bucket()", "parked_events(store, subscription)")


__all__ = [
    "JetStreamRunner",
    "JetStreamStatus",
    "consumer_name",
    "jetstream_parked",
    "jetstream_status",
    "parked_bucket",
]
