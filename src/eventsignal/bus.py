"""In-process delivery of new events to subscribers.

Each subscriber has its own queue and worker task, so a slow or failing subscriber neither delays
the command that produced the events nor the other subscribers. Delivery is in the order events
were stored by this process, which keeps version order per aggregate.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from eventsignal.domain.events import Event
from eventsignal.telemetry import (
    SubscriberFailed,
    SubscriberInformed,
    TelemetryHook,
    log_telemetry,
    logger,
)

Subscriber = Callable[[Event[Any]], Awaitable[object] | object]


def subscriber_name(subscriber: Subscriber) -> str:
    return getattr(subscriber, "__qualname__", None) or type(subscriber).__qualname__


class _Mailbox:
    """One subscriber's queue and the task that empties it."""

    __slots__ = ("idle", "name", "pending", "subscriber", "task", "wakeup")

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.name = subscriber_name(subscriber)
        self.pending: deque[Event[Any]] = deque()
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None


class EventBus:
    """Fans events out to subscribers after they are stored."""

    def __init__(self, subscribers: Iterable[Subscriber], telemetry: TelemetryHook | None) -> None:
        self._subscribers = list(subscribers)
        self._mailboxes: list[_Mailbox] = []
        self._telemetry = telemetry

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        if self._mailboxes:
            return
        self._mailboxes = [_Mailbox(s) for s in self._subscribers]
        for box in self._mailboxes:
            box.task = asyncio.create_task(self._deliver(box), name=f"eventsignal:{box.name}")

    def publish(self, events: Sequence[Event[Any]]) -> None:
        """Queue events for every subscriber; returns at once."""
        for box in self._mailboxes:
            box.pending.extend(events)
            box.idle.clear()
            box.wakeup.set()

    async def drain(self) -> None:
        """Wait until every subscriber has handled every event published so far."""
        for box in self._mailboxes:
            await box.idle.wait()

    async def stop(self) -> None:
        """Deliver what is queued, then stop the workers."""
        await self.drain()
        for box in self._mailboxes:
            if box.task is not None:
                box.task.cancel()
        await asyncio.gather(*(b.task for b in self._mailboxes if b.task), return_exceptions=True)
        self._mailboxes = []

    async def _deliver(self, box: _Mailbox) -> None:
        pending = box.pending
        subscriber = box.subscriber
        while True:
            if not pending:
                box.idle.set()
                box.wakeup.clear()
                await box.wakeup.wait()
                continue
            event = pending.popleft()
            try:
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._report(
                    logging.ERROR,
                    SubscriberFailed,
                    event,
                    box.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
            else:
                self._report(logging.DEBUG, SubscriberInformed, event, box.name)

    def _report(
        self,
        level: int,
        kind: type[SubscriberFailed] | type[SubscriberInformed],
        event: Event[Any],
        subscriber: str,
        **fields: str,
    ) -> None:
        """Tell telemetry, unless its logger drops the level; a failing hook stops nothing."""
        hook = self._telemetry
        if hook is None or (hook is log_telemetry and not logger.isEnabledFor(level)):
            return
        try:
            hook(
                kind(
                    aggregate_name=event.aggregate_name,
                    aggregate_id=event.aggregate_id,
                    subscriber=subscriber,
                    version=event.version,
                    **fields,
                )
            )
        except Exception:
            logger.exception("telemetry hook failed on a %s report", kind.__name__)
