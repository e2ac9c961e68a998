"""Subscriptions registered by name, so tools (``eventsignal rebuild URL NAME``) can find them.

An application registers its projections when its module is imported; the command line imports
that module, then looks the name up here.
"""

from __future__ import annotations

from eventsignal.domain.errors import ConfigurationError
from eventsignal.subscriptions.errors import SubscriptionNotFound
from eventsignal.subscriptions.subscription import Subscription

_registered: dict[str, Subscription] = {}


def register(subscription: Subscription) -> Subscription:
    """Make ``subscription`` findable by its name; returns it, for use at module level."""
    existing = _registered.get(subscription.name)
    if existing is not None and existing is not subscription:
        raise ConfigurationError(f"another subscription is registered as {subscription.name!r}")
    _registered[subscription.name] = subscription
    return subscription


def registered(name: str) -> Subscription:
    """The subscription registered under ``name``; :class:`SubscriptionNotFound` (a
    ``KeyError``) names the known ones."""
    try:
        return _registered[name]
    except KeyError:
        known = ", ".join(sorted(_registered)) or "none"
        raise SubscriptionNotFound(
            f"no subscription is registered as {name!r} (registered: {known})"
        ) from None


def registered_names() -> list[str]:
    """The names of the registered subscriptions, sorted."""
    return sorted(_registered)
