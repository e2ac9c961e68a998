"""Rebuilding a projection from zero: reset its checkpoints and read models, replay, report."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from eventsignal.stores.base import EventStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions.runner import SubscriptionRunner
from eventsignal.subscriptions.status import processed_position
from eventsignal.subscriptions.subscription import Subscription
from eventsignal.subscriptions.transaction import Transaction


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """How far a rebuild is, in global positions of the store's log.

    ``rate`` is positions per second since the start; ``remaining`` the seconds left at that
    rate (``None`` until there is a rate).
    """

    done: int
    total: int
    rate: float
    elapsed: float
    remaining: float | None


ProgressCallback = Callable[[Progress], object]


async def rebuild(
    store: EventStore,
    subscription: Subscription,
    *,
    progress: ProgressCallback | None = None,
    interval: float = 0.5,
    checkpoints: SubscriptionStore | None = None,
) -> Progress:
    """Empty the subscription's read models, send it back to position 0 and replay the store.

    Returns when every event stored when the rebuild began is processed. Runners of the same
    subscription elsewhere lose their leases at the reset and join the replay when they renew.
    ``progress`` is called about every ``interval`` seconds and once at the end.
    """
    runner = SubscriptionRunner(subscription, store, checkpoints=checkpoints)
    name = subscription.name
    await store.open()
    try:
        await runner.setup()
        total = await store.head_position()
        async with runner.state.subscription_transaction() as state:
            await state.reset(name)
            tx = Transaction(state)
            for model in subscription.read_models:
                await model.clear(tx)
        started = time.monotonic()
        async with runner:
            while True:
                done = await processed_position(store, name, checkpoints=runner.state) or 0
                elapsed = time.monotonic() - started
                rate = done / elapsed if elapsed > 0 else 0.0
                finished = done >= total
                remaining = 0.0 if finished else (total - done) / rate if rate > 0 else None
                report = Progress(
                    done=min(done, total),
                    total=total,
                    rate=rate,
                    elapsed=elapsed,
                    remaining=remaining,
                )
                if progress is not None:
                    progress(report)
                if finished:
                    return report
                if runner.error is not None and not runner.running:
                    raise runner.error
                await runner.state.subscription_progress.moved(name, interval)
    finally:
        await store.close()
