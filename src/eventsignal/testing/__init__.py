"""Tools for testing code built on eventsignal, and stores written for it."""

from eventsignal.testing.compliance import EventStoreCompliance, make_events
from eventsignal.testing.dcb_compliance import DcbCompliance
from eventsignal.testing.lifecycle_compliance import LifecycleCompliance
from eventsignal.testing.subscription_compliance import SubscriptionStoreCompliance
from eventsignal.testing.tenant_compliance import TenantCompliance

__all__ = [
    "DcbCompliance",
    "EventStoreCompliance",
    "LifecycleCompliance",
    "SubscriptionStoreCompliance",
    "TenantCompliance",
    "make_events",
]
