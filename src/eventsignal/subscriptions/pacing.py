"""Pacing the transactions a handler works in: short enough for the server's idle limit.

On PostgreSQL a subscription's transaction may sit idle (no SQL sent) for at most
``idle_in_transaction_session_timeout``, twice ``lease_ttl``; past that the server ends the
session, which is what cuts off a paused or partitioned process. A handler that only stages
read-model writes sends no SQL until the commit, so a batch whose handler time exceeds the limit
would be killed, and redone, forever. So batches are sized by time: a transaction takes events
while its budget lasts (a quarter of the idle limit), commits, and the next one takes the rest.

Only a single event whose handler outlasts the limit can still get its session ended. That is
the handler's slowness, not an outage, and is reported as such (:class:`HandlerTooSlow`): the
event is retried and parked like any other failing one, and the subscription moves on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from eventsignal.domain.errors import StoreUnavailable
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.subscription_state import SubscriptionState
from eventsignal.subscriptions.errors import HandlerTooSlow


class Slice:
    """The leading events of a batch that fit in one transaction's time budget (at least one).

    Iterate it to deliver; afterwards ``records`` are the events taken, the last one included
    even when its delivery failed.
    """

    __slots__ = ("_batch", "_deadline", "taken")

    def __init__(self, batch: Sequence[StoredEvent], budget: float) -> None:
        self._batch = batch
        self._deadline = time.monotonic() + budget
        self.taken = 0

    def __iter__(self) -> Iterator[StoredEvent]:
        for record in self._batch:
            if self.taken and time.monotonic() >= self._deadline:
                return
            self.taken += 1
            yield record

    @property
    def records(self) -> Sequence[StoredEvent]:
        return self._batch[: self.taken]


@asynccontextmanager
async def handler_transaction(
    transaction: AbstractAsyncContextManager[SubscriptionState], idle_limit: float
) -> AsyncIterator[SubscriptionState]:
    """A checkpoint transaction a handler works in.

    When the store is lost after the transaction was held past the idle limit (where the store
    enforces one), the server ended it for idleness: that is :class:`HandlerTooSlow`, a failure
    of the handler.
    """
    started = time.monotonic()
    enforced: float | None = None
    try:
        async with transaction as state:
            enforced = state.idle_limit
            yield state
    except StoreUnavailable as exc:
        held = time.monotonic() - started
        if enforced is None or held < idle_limit:
            raise
        raise HandlerTooSlow(held, idle_limit) from exc
