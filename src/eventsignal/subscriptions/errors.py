"""The errors of durable subscriptions."""

from __future__ import annotations

from eventsignal.domain.errors import HandlerTooSlow, SignalError, SubscriptionTimeout


class SubscriptionStopped(SignalError):
    """A subscription whose failure policy is ``"stop"`` parked an event and stopped before it."""

    def __init__(self, subscription: str, position: int, error: str) -> None:
        super().__init__(
            f"subscription {subscription!r} stopped at the event at position {position}: {error}"
        )
        self.subscription = subscription
        self.position = position
        self.error = error


class SubscriptionNotFound(SignalError, KeyError):
    """No subscription of that name is registered, or it has no state in the store yet."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


__all__ = ["HandlerTooSlow", "SubscriptionNotFound", "SubscriptionStopped", "SubscriptionTimeout"]
