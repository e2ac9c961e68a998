"""Tools for testing code built on eventsignal, and stores written for it."""

from eventsignal.testing.compliance import EventStoreCompliance, make_events
from eventsignal.testing.lifecycle_compliance import LifecycleCompliance
from eventsignal.testing.subscription_compliance import SubscriptionStoreCompliance

__all__ = [
    "EventStoreCompliance",
    "LifecycleCompliance",
    "SubscriptionStoreCompliance",
    "make_events",
]
