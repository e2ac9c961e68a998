"""Policies (process managers): subscriptions that react to events with commands, once.

A redelivered event must not issue its commands twice. Each command a policy sends for an event
gets a key derived from the event's id, the policy's name and the command's rank among that
event's commands; the events the command produces carry it in their metadata (``command_key``)
with ``causation_id`` (the causing event) and ``correlation_id`` (inherited, or the causing
event's id). Before sending, the target aggregate's stored events are searched for the key.

The search and the send are two steps: only two members delivering the same event at the same
moment (possible for an instant while a lease moves) could both send. A command that produced no
events leaves no key, so a redelivery runs it again; commands should be no-ops when repeated.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid5

from eventsignal.application import Signal
from eventsignal.domain.errors import AggregateExists
from eventsignal.domain.events import Event
from eventsignal.subscriptions.subscription import Subscription

PolicyHandler = Callable[[Event[Any], "Commands"], Awaitable[object] | object]


class Commands:
    """Sends the commands one event causes, each at most once."""

    __slots__ = ("_event", "_policy", "_sent")

    def __init__(self, event: Event[Any], policy: str) -> None:
        self._event = event
        self._policy = policy
        self._sent = 0

    def key(self, rank: int) -> UUID:
        """The idempotency key of this event's ``rank``-th command (from 0)."""
        return uuid5(self._event.id, f"{self._policy}#{rank}")

    async def send(
        self,
        signal: Signal[Any, Any],
        aggregate_id: str,
        command: object,
        *,
        create: bool = False,
    ) -> bool:
        """Run ``command`` on an aggregate of ``signal``; ``False`` if an earlier delivery did.

        ``create`` creates the aggregate first if it does not exist. Commands must be sent in the
        same order on every delivery of an event, since their rank is part of their key.
        """
        event = self._event
        key = str(self.key(self._sent))
        self._sent += 1
        metadata = {
            "causation_id": str(event.id),
            "correlation_id": event.metadata.get("correlation_id") or str(event.id),
            "command_key": key,
        }
        if create:
            try:  # creation and the command's events are stored together, or not at all
                await signal.create(aggregate_id, command, metadata=metadata)
                return True
            except AggregateExists:
                pass
        for stored in await signal.store.read_aggregate(signal.name, aggregate_id):
            if stored.metadata.get("command_key") == key:
                return False
        await signal.handle_command(aggregate_id, command, metadata=metadata)
        return True


def policy(name: str, handler: PolicyHandler, **options: Any) -> Subscription:
    """A :class:`Subscription` whose handler takes ``(event, commands)``.

    ``options`` are those of :class:`Subscription` (``configs``, ``event_names``, ...). Delivery
    is at-least-once; the key check makes each command's effect happen once.
    """

    async def deliver(event: Event[Any]) -> None:
        result = handler(event, Commands(event, name))
        if inspect.isawaitable(result):
            await result

    deliver.__qualname__ = f"policy:{name}"
    return Subscription(name=name, handler=deliver, transactional=False, **options)
