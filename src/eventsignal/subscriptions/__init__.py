"""Durable subscriptions: checkpointed, partitioned, retried; projections and policies.

Declare a :class:`Subscription` (or a :func:`policy`), run it with :class:`SubscriptionRunner`,
keep query state in a :class:`ReadModel`, and watch it with :func:`subscription_status`::

    totals: ReadModel[dict[str, int]] = ReadModel("totals")

    async def count(event: Event[CartEvent], tx: Transaction) -> None:  # exactly-once
        if isinstance(event.data, CartPaid):
            doc = await totals.get(tx, "all") or {"cents": 0}
            await totals.put(tx, "all", {"cents": doc["cents"] + event.data.total}, event.position)

    revenue = Subscription(name="revenue", handler=count, configs=[cart_config],
                           read_models=[totals])

    async with SubscriptionRunner(revenue, store):          # catch up, then follow
        await signal.handle_command(cart_id, CompletePurchase(), wait_for=["revenue"])
        print(await totals.read(store, "all"))               # reflects the purchase

Handlers taking ``(event)`` alone are delivered at least once. Several processes running the same
subscription with ``partitions=N`` share the work by aggregate; :func:`rebuild` replays one from
zero; :func:`subscription_status` and :func:`parked_events` need no handlers, only the store.
"""

from eventsignal.stores.subscription_state import ParkedEvent
from eventsignal.subscriptions.errors import (
    HandlerTooSlow,
    SubscriptionStopped,
    SubscriptionTimeout,
)
from eventsignal.subscriptions.jetstream import (
    JetStreamRunner,
    JetStreamStatus,
    jetstream_parked,
    jetstream_status,
)
from eventsignal.subscriptions.partitions import partition_of
from eventsignal.subscriptions.policy import Commands, policy
from eventsignal.subscriptions.quarantine import quarantine, quarantined
from eventsignal.subscriptions.quarantine import release as release_quarantined
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
    "HandlerTooSlow",
    "JetStreamRunner",
    "JetStreamStatus",
    "ParkedEvent",
    "Progress",
    "ReadModel",
    "Subscription",
    "SubscriptionRunner",
    "SubscriptionStatus",
    "SubscriptionStopped",
    "SubscriptionTimeout",
    "Transaction",
    "jetstream_parked",
    "jetstream_status",
    "parked_events",
    "partition_of",
    "policy",
    "processed_position",
    "quarantine",
    "quarantined",
    "rebuild",
    "register",
    "registered",
    "registered_names",
    "release_quarantined",
    "subscription_status",
    "wait_until_processed",
]
