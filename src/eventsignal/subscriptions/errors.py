"""The errors of durable subscriptions."""

from __future__ import annotations

from eventsignal.domain.errors import SignalError


class SubscriptionTimeout(SignalError):
    """A subscription did not reach a position in time (read-your-writes waited in vain)."""

    def __init__(self, subscription: str, position: int, reached: int, timeout: float) -> None:
        super().__init__(
            f"subscription {subscription!r} reached position {reached}, not {position}, "
            f"within {timeout:g} s"
        )
        self.subscription = subscription
        self.position = position
        self.reached = reached
        self.timeout = timeout


class HandlerTooSlow(SignalError):
    """A handler kept its transaction idle past the server's limit, and the server ended it.

    On PostgreSQL a subscription's transaction may go without SQL for at most twice ``lease_ttl``
    (so that a paused process cannot hold its locks); batches are cut to fit, so only a single
    event taking that long ends up here. The event is retried, then parked.
    """

    def __init__(self, held: float, limit: float) -> None:
        super().__init__(
            f"the handler held its transaction for {held:.1f} s and the server ended it, since a "
            f"subscription's transaction may send no SQL for at most {limit:g} s (2 x lease_ttl): "
            "make the handler faster on this event, or raise the subscription's lease_ttl"
        )
        self.held = held
        self.limit = limit


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
