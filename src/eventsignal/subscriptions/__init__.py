"""Durable subscriptions: checkpointed, partitioned, retried; projections and policies.

Declare a :class:`Subscription` (or a :func:`policy`), run it with :class:`SubscriptionRunner`,
keep query state in a :class:`ReadModel`, and watch it with :func:`subscription_status`.
"""

from eventsignal.subscriptions.checkpoints import ParkedEvent
from eventsignal.subscriptions.errors import SubscriptionStopped, SubscriptionTimeout
from eventsignal.subscriptions.partitions import partition_of
from eventsignal.subscriptions.policy import Commands, policy
from eventsignal.subscriptions.readmodel import Document, ReadModel
from eventsignal.subscriptions.rebuild import Progress, rebuild
from eventsignal.subscriptions.registry import register, registered, registered_names
from eventsignal.subscriptions.runner import SubscriptionRunner
from eventsignal.subscriptions.status import (
    SubscriptionStatus,
    parked_events,
    processed_position,
    subscription_status,
    wait_until_processed,
)
from eventsignal.subscriptions.subscription import Subscription
from eventsignal.subscriptions.transaction import Transaction

__all__ = [
    "Commands",
    "Document",
    "ParkedEvent",
    "Progress",
    "ReadModel",
    "Subscription",
    "SubscriptionRunner",
    "SubscriptionStatus",
    "SubscriptionStopped",
    "SubscriptionTimeout",
    "Transaction",
    "parked_events",
    "partition_of",
    "policy",
    "processed_position",
    "rebuild",
    "register",
    "registered",
    "registered_names",
    "subscription_status",
    "wait_until_processed",
]
