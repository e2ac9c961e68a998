"""The second half of the store contract: what durable subscriptions keep in a store.

A store that implements :class:`SubscriptionStore` keeps, beside its events, each subscription's
checkpoints with their leases, its members, the events it parked, the events an operator
quarantined, and read-model documents. All of it is read and written through a
:class:`SubscriptionState`, one transaction: its writes become visible together when the
``async with`` block ends cleanly, or not at all.

Every checkpoint move is a compare-and-set on the position and owner expected
(:meth:`SubscriptionState.advance`): a process that lost its lease (paused, then its partition
taken over) fails the update, and its transaction, with the handler's writes in it, rolls back.
So even a late zombie cannot apply an event twice. Times are Unix seconds from the processes'
clocks; correctness never depends on them.

:class:`eventsignal.testing.SubscriptionStoreCompliance` checks an implementation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import msgspec

from eventsignal.domain.errors import SubscriptionTimeout
from eventsignal.stores.base import StoredEvent
from eventsignal.wakeups import wake


class Lease(msgspec.Struct, frozen=True):
    """One partition of a subscription: its checkpoint, and who leases it until when."""

    part: int
    position: int
    owner: str | None
    lease_until: float


class ParkedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event a subscription gave up on, with the last error."""

    subscription: str
    event_id: UUID
    position: int
    aggregate_name: str
    aggregate_id: str
    version: int
    event_name: str
    error: str
    attempts: int
    parked_at: datetime


def parked_event(
    subscription: str, event: StoredEvent, error: str, attempts: int, now: float
) -> ParkedEvent:
    """The record of ``event`` parked by ``subscription`` at ``now`` (Unix seconds)."""
    return ParkedEvent(
        subscription=subscription,
        event_id=event.id,
        position=event.position,
        aggregate_name=event.aggregate_name,
        aggregate_id=event.aggregate_id,
        version=event.version,
        event_name=event.name,
        error=error,
        attempts=attempts,
        parked_at=datetime.fromtimestamp(now, UTC),
    )


class SubscriptionRow(msgspec.Struct, frozen=True):
    """One subscription as stored: the position all its partitions passed, how many partitions
    it has, how many are leased now, how many events it parked."""

    name: str
    position: int
    partitions: int
    leased: int
    parked: int


class _Partition(Protocol):
    @property
    def position(self) -> int: ...

    @property
    def owner(self) -> str | None: ...

    @property
    def lease_until(self) -> float: ...


def overview_rows(
    partitions: Iterable[tuple[str, _Partition]], parked: Iterable[str], now: float
) -> list[SubscriptionRow]:
    """One row per subscription from its partitions' rows and the names of its parked events."""
    by_name: dict[str, list[_Partition]] = {}
    for name, row in partitions:
        by_name.setdefault(name, []).append(row)
    counts: dict[str, int] = {}
    for name in parked:
        counts[name] = counts.get(name, 0) + 1
    return [
        SubscriptionRow(
            name,
            min(r.position for r in rows),
            len(rows),
            sum(1 for r in rows if r.owner is not None and r.lease_until >= now),
            counts.get(name, 0),
        )
        for name, rows in sorted(by_name.items())
    ]


class StoredDocument(msgspec.Struct, frozen=True):
    """A read-model document as stored: JSON bytes and the position of the last event in it."""

    key: str
    data: bytes
    position: int


class SubscriptionState(Protocol):
    """One transaction on a store's subscription state.

    ``idle_limit`` is how long (seconds) the backend lets this transaction sit without a
    statement before it ends it, or ``None``. ``sql`` is the store's own SQL transaction, for
    handlers that write their own tables in it, or ``None`` where the store has no SQL.
    """

    idle_limit: float | None

    @property
    def sql(self) -> Any | None: ...

    # Checkpoints and leases

    async def ensure(self, name: str, parts: int, position: int) -> None:
        """Create the partitions' rows at ``position`` unless they exist; refuse (with
        :class:`~eventsignal.ConfigurationError`) a subscription stored with other partitions."""
        ...

    async def leases(self, name: str) -> list[Lease]: ...

    async def claim(
        self, name: str, part: int, member: str, now: float, until: float
    ) -> int | None:
        """Lease a partition that is free or whose lease expired before ``now``; return its
        checkpoint, or ``None`` if someone else holds it."""
        ...

    async def renew(self, name: str, member: str, until: float) -> None:
        """Extend the member's leases and its membership to ``until``."""
        ...

    async def members(self, name: str, now: float) -> list[str]:
        """The members alive at ``now``, sorted; a transaction also forgets the long dead (a
        read view only lists)."""
        ...

    async def release(self, name: str, member: str, part: int | None = None) -> None:
        """Hand back one partition, or every one the member holds (and its membership)."""
        ...

    async def advance(
        self, name: str, part: int, member: str, expected: int, position: int, now: float
    ) -> bool:
        """Move a checkpoint from ``expected`` to ``position`` if ``member`` still owns it."""
        ...

    async def reset(self, name: str) -> None:
        """Send every partition back to 0, unowned, and forget the parked events."""
        ...

    async def progress(self, name: str) -> int | None:
        """The position every partition passed (``None``: no such subscription)."""
        ...

    async def overview(self, now: float) -> list[SubscriptionRow]: ...

    # Parked events

    async def park(
        self, name: str, event: StoredEvent, error: str, attempts: int, now: float
    ) -> None:
        """Record (or update, adding the attempts) a parked event."""
        ...

    async def parked(self, name: str | None = None) -> list[ParkedEvent]:
        """Parked events of one subscription (or all), by subscription and position."""
        ...

    async def unpark(self, name: str, event_id: UUID) -> None: ...

    # Quarantined events

    async def quarantine(self, position: int, reason: str, now: float) -> None: ...

    async def quarantined(self) -> dict[int, str]: ...

    async def unquarantine(self, position: int) -> bool: ...

    # Read-model documents

    async def document(self, model: str, key: str) -> StoredDocument | None: ...

    async def documents(self, model: str) -> list[StoredDocument]:
        """Every document of a model, by key."""
        ...

    async def document_models(self) -> list[str]:
        """The models that hold documents, sorted: what a tool walks to see them all."""
        ...

    async def put_documents(self, model_rows: Iterable[tuple[str, StoredDocument]]) -> None:
        """Write ``(model, document)`` pairs, replacing documents under the same keys."""
        ...

    async def delete_documents(self, keys: Iterable[tuple[str, str]]) -> None:
        """Remove ``(model, key)`` pairs; absent ones are ignored."""
        ...

    async def clear_documents(self, model: str) -> None: ...


@runtime_checkable
class SubscriptionStore(Protocol):
    """A store that keeps subscription state: memory, SQLite and PostgreSQL do."""

    @property
    def subscription_progress(self) -> SubscriptionProgress: ...

    async def setup_subscriptions(self) -> None:
        """Create or upgrade what the state needs (tables); cheap after the first call."""
        ...

    def subscription_transaction(
        self, *, idle_limit: float | None = None
    ) -> AbstractAsyncContextManager[SubscriptionState]:
        """A transaction on the state. ``idle_limit`` asks the backend, where it can, to end the
        transaction when it sits that long without a statement (a paused process)."""
        ...

    def subscription_reads(self) -> AbstractAsyncContextManager[SubscriptionState]:
        """A view of the committed state that never waits behind a writer (for status polls and
        read-model reads); it must not be written through."""
        ...


class SubscriptionProgress:
    """In-process wake-ups for read-your-writes: a runner says "I moved", waiters re-check.

    One per store object, so waiters of one store are not woken by another's runners. Waiters
    may belong to event loops in other threads; each is woken in its own loop.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def notify(self, subscription: str) -> None:
        waiters = self._waiters.pop(subscription, None)
        if waiters:
            wake(waiters)

    async def moved(self, subscription: str, within: float) -> None:
        """Return when a runner of ``subscription`` here advanced, or after ``within`` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(subscription, []).append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(subscription)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)


_POLL = 0.05  # how often waiters look at the store for runners in other processes


async def wait_until_processed(
    state: SubscriptionStore,
    subscriptions: Sequence[str],
    position: int,
    timeout: float,  # noqa: ASYNC109 - the deadline is part of the contract
) -> None:
    """Return once every named subscription handled every event up to ``position``, else raise
    :class:`~eventsignal.SubscriptionTimeout` after ``timeout`` seconds in all.

    Runners in this process wake the waiter at once; those elsewhere are seen by polling.
    """
    if position <= 0 or not subscriptions:
        return
    await state.setup_subscriptions()
    progress = state.subscription_progress
    deadline = time.monotonic() + timeout
    for name in subscriptions:
        while True:
            async with state.subscription_reads() as reads:
                reached = await reads.progress(name)
            if reached is not None and reached >= position:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise SubscriptionTimeout(name, position, reached or 0, timeout)
            await progress.moved(name, min(left, _POLL))
