"""Running a subscription: catch up in batches, then follow live, with leases and retries.

One loop per runner reads the store's global log once (prefetching the next batch while the
handler works), hands each partition it leases the events of that partition past its checkpoint,
and advances the checkpoints with a compare-and-set. When the log is exhausted it sleeps in
``store.wait_for_events``, bounded by a slow poll as a safety net against a missed wake-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from inspect import isawaitable
from typing import Any
from uuid import UUID, uuid4

from eventsignal.domain.errors import EventSerializationError, StateConflict, StoreUnavailable
from eventsignal.domain.events import Event
from eventsignal.domain.evolution import split_stored_name
from eventsignal.serialization import envelope
from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.subscription_state import (
    ParkedEvent,
    SubscriptionState,
    SubscriptionStore,
)
from eventsignal.stores.tenancy import DEFAULT_TENANT, wait_within
from eventsignal.subscriptions.errors import SubscriptionStopped
from eventsignal.subscriptions.lifecycle import RunnerLifecycle
from eventsignal.subscriptions.pacing import Slice, handler_transaction
from eventsignal.subscriptions.partitions import partition_of, plan
from eventsignal.subscriptions.subscription import Subscription
from eventsignal.subscriptions.transaction import Transaction, state_store_for

logger = logging.getLogger("eventsignal.subscriptions")


class _LostPartition(Exception):
    """A checkpoint compare-and-set failed: another member took the partition over."""


def _forget(task: asyncio.Task[Any]) -> None:
    """Mark an abandoned read's outcome as seen: its events will be read again anyway."""
    if not task.cancelled():
        task.exception()


async def _end(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` until they have ended. Once is not always enough: before Python 3.12,
    ``asyncio.wait_for`` (drivers use it) swallows a cancellation that lands as its result
    arrives, and the loop would go on running."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        _forget(task)


def default_member() -> str:
    """A member name unique to this runner, readable in status output."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


class SubscriptionRunner(RunnerLifecycle):
    """Runs one :class:`Subscription` against a store until stopped.

    ``async with SubscriptionRunner(subscription, store):`` starts it in the background. Several
    runners of the same subscription, in one process or many, share its partitions.
    ``checkpoints`` is where checkpoints live when the store itself cannot keep them (NATS).
    """

    def __init__(
        self,
        subscription: Subscription,
        store: EventStore,
        *,
        checkpoints: SubscriptionStore | None = None,
        member: str | None = None,
    ) -> None:
        self.subscription = subscription
        self.store = store
        self.state: SubscriptionStore = state_store_for(store, checkpoints)
        # A transaction idle for two leases belongs to a paused process: let the server end it.
        self.idle_limit = 2 * subscription.lease_ttl
        # Handler time per transaction: a quarter of that idle limit (see pacing).
        self._budget = subscription.lease_ttl / 2
        self.member = member or default_member()
        self.delivered = 0  # events handled successfully by this runner
        self.error: BaseException | None = None  # why the loop ended, if it did
        self._owned: dict[int, int] = {}  # partition -> checkpoint
        self._blocked: set[UUID] = set()  # parked events that will be delivered again
        self._quarantined: dict[int, str] = {}  # positions every subscription passes by
        self._task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._prefetch: tuple[int, asyncio.Task[Sequence[StoredEvent]]] | None = None
        # A batched handler's checkpoint commits, running behind its deliveries (see _queue).
        self._committing: asyncio.Task[None] | None = None
        self._to_commit: tuple[int, list[StoredEvent], int] | None = None
        self._committed_to = 0  # the last position handed to the commits
        self._personal = [s for s in subscription.serializers.values() if s.personal is not None]

    # Life cycle

    async def start(self) -> None:
        """Open the store, then catch up and follow in a task of its own; a second call does
        nothing."""
        if self._task is not None:
            return
        await self._open()
        try:
            await self.setup()
        except BaseException:
            await self._close()
            raise
        name = self.subscription.name
        self._task = asyncio.create_task(self._run(), name=f"eventsignal:subscription:{name}")
        self._keeper = asyncio.create_task(self._keep(), name=f"eventsignal:leases:{name}")

    async def setup(self) -> None:
        """Create the tables and this subscription's checkpoints if they are missing."""
        sub = self.subscription
        await self.state.setup_subscriptions()
        start = await self.store.head_position() if sub.start == "end" else 0
        try:
            async with self._transaction() as tx:
                await tx.ensure(sub.name, sub.partitions, start)
        except StateConflict:  # another member created them meanwhile: check them once more
            async with self._transaction() as tx:
                await tx.ensure(sub.name, sub.partitions, start)

    async def stop(self) -> None:
        """Stop delivering and hand the partitions back at once, for the other members."""
        tasks: list[asyncio.Task[Any]] = [t for t in (self._task, self._keeper) if t is not None]
        if not tasks:
            return
        self._task = self._keeper = None
        prefetch = self._cancel_prefetch()
        if prefetch is not None:
            tasks.append(prefetch)
        await _end(tasks)
        committing, self._committing = self._committing, None
        if committing is not None:  # let a checkpoint commit in flight land, briefly
            await asyncio.wait({committing}, timeout=self.subscription.lease_ttl / 3)
            await _end([committing])
        try:
            async with self._transaction() as tx:
                await tx.release(self.subscription.name, self.member)
        except Exception:  # the leases expire on their own
            logger.warning("could not release %s's partitions", self.member, exc_info=True)
        self._owned.clear()
        await self._close()

    def _stores(self) -> list[Any]:
        """The event store, and the checkpoint store when it is another one (counted opens)."""
        state: Any = self.state
        separate = state is not self.store and hasattr(state, "open")
        return [self.store, state] if separate else [self.store]

    async def _open(self) -> None:
        opened = []
        try:
            for store in self._stores():
                await store.open()
                opened.append(store)
        except BaseException:
            for store in reversed(opened):
                await store.close()
            raise

    async def _close(self) -> None:
        for store in reversed(self._stores()):
            await store.close()

    def _transaction(self) -> AbstractAsyncContextManager[SubscriptionState]:
        return self.state.subscription_transaction(idle_limit=self.idle_limit)

    @property
    def partitions(self) -> dict[int, int]:
        """The partitions this runner leases now, with their checkpoints."""
        return dict(self._owned)

    # The loop

    async def _run(self) -> None:
        sub = self.subscription
        store = self.store
        nap = min(sub.poll_interval, sub.lease_ttl / 3)
        rebalance_at = 0.0
        failures = 0
        while True:
            try:
                if time.monotonic() >= rebalance_at:
                    await self._settle()  # the leases table must hold this runner's checkpoints
                    await self._rebalance()
                    rebalance_at = time.monotonic() + sub.lease_ttl / 3
                if not self._owned:
                    await asyncio.sleep(nap)
                    continue
                after = min(self._owned.values())
                if self._committing is not None:  # read on from the batch being checkpointed
                    after = max(after, self._committed_to)
                batch = await self._read(after)
                if not batch:
                    await self._settle()
                    try:
                        async with asyncio.timeout(nap):
                            await wait_within(store, DEFAULT_TENANT, after)
                    except TimeoutError:
                        pass
                    continue
                if len(batch) == sub.batch_size:
                    last = batch[-1].position
                    self._prefetch = (last, asyncio.create_task(store.read_all(last, len(batch))))
                await self._process(batch)
                failures = 0
                self.error = None  # recovered: an old failure is no longer why anything stops
            except SubscriptionStopped as exc:
                self.error = exc
                logger.error("%s", exc)
                return
            except (_LostPartition, StateConflict):  # StateConflict: the same, found at commit
                rebalance_at = 0.0
            except Exception as exc:
                # The database went away (StoreUnavailable is never the handler's fault, so it is
                # never parked) or a bug: keep trying, slower and slower, and say so.
                failures += 1
                self.error = exc
                logger.exception("subscription %r failed; retrying", sub.name)
                self._cancel_prefetch()
                await asyncio.sleep(min(0.1 * 2**failures, sub.lease_ttl / 3))
                rebalance_at = 0.0

    async def _read(self, after: int) -> Sequence[StoredEvent]:
        prefetch = self._prefetch
        self._prefetch = None
        if prefetch is not None:
            if prefetch[0] == after:
                return await prefetch[1]
            prefetch[1].cancel()
            prefetch[1].add_done_callback(_forget)
        return await self.store.read_all(after, self.subscription.batch_size)

    def _cancel_prefetch(self) -> asyncio.Task[Sequence[StoredEvent]] | None:
        prefetch = self._prefetch
        self._prefetch = None
        if prefetch is None:
            return None
        task = prefetch[1]
        task.cancel()
        task.add_done_callback(_forget)
        return task

    async def _keep(self) -> None:
        """Renew the leases on a clock of its own, so a slow handler does not lose them."""
        sub = self.subscription
        while True:
            await asyncio.sleep(sub.lease_ttl / 3)
            try:
                async with self._transaction() as tx:
                    await tx.renew(sub.name, self.member, time.time() + sub.lease_ttl)
            except Exception:
                logger.warning("could not renew %s's leases", self.member, exc_info=True)

    async def _rebalance(self) -> None:
        sub = self.subscription
        name = sub.name
        now = time.time()
        until = now + sub.lease_ttl
        async with self._transaction() as tx:
            await tx.renew(name, self.member, until)
            members = await tx.members(name, now)
            leases = await tx.leases(name)
            # The table is the truth: between batches, this runner holds what it says.
            self._owned = {
                lease.part: lease.position for lease in leases if lease.owner == self.member
            }
            decided = plan(leases, members, self.member, now)
            for part in decided.release:
                await tx.release(name, self.member, part)
                self._owned.pop(part, None)
            for part in decided.claim:
                position = await tx.claim(name, part, self.member, now, until)
                if position is not None:
                    self._owned[part] = position
            self._quarantined = await tx.quarantined()
            if sub.on_failure == "stop":
                self._blocked = {
                    p.event_id
                    for p in await tx.parked(name)
                    if p.position > self._owned.get(self._part(p), p.position)
                }

    def _part(self, event: StoredEvent | ParkedEvent) -> int:
        return partition_of(event.aggregate_name, event.aggregate_id, self.subscription.partitions)

    # Delivery

    def _select(self, batch: Sequence[StoredEvent]) -> list[tuple[int, StoredEvent]]:
        """The events of this batch that this runner owes its handler, with their partitions."""
        sub = self.subscription
        aggregates = sub.aggregate_names
        names = sub.event_names
        owned = self._owned
        parts = sub.partitions
        quarantined = self._quarantined
        chosen = []
        for record in batch:
            if record.aggregate_name not in aggregates:  # type: ignore[operator]
                continue
            if quarantined and record.position in quarantined:
                continue
            if (
                names is not None
                and record.name not in names
                and split_stored_name(record.name)[0] not in names
            ):
                continue
            part = (
                0 if parts == 1 else partition_of(record.aggregate_name, record.aggregate_id, parts)
            )
            checkpoint = owned.get(part)
            if checkpoint is None or record.position <= checkpoint:
                continue
            chosen.append((part, record))
        return chosen

    def envelopes(self, record: StoredEvent) -> list[Event[Any]]:
        """The envelopes of a stored event: one, or more if an upcaster split it."""
        decoded = self.subscription.serializers[record.aggregate_name].decode_all(record)
        return [envelope(record, data) for data in decoded]

    async def unlock(self, records: Sequence[StoredEvent]) -> None:
        """Load the subject keys the personal fields of ``records`` need (see
        :mod:`eventsignal.privacy`); nothing to do for types without personal fields."""
        for serializer in self._personal:
            await serializer.personal.unlock(self.store, records)

    async def _call(self, record: StoredEvent, tx: Transaction | None) -> None:
        handler: Any = self.subscription.handler
        if self._personal:
            await self.unlock((record,))
        if self.subscription.batched:
            result = handler(self.envelopes(record))
            if result is not None and isawaitable(result):
                await result
            return
        for event in self.envelopes(record):
            result = handler(event) if tx is None else handler(event, tx)
            if result is not None and isawaitable(result):
                await result

    async def _deliver(self, batch: Iterable[StoredEvent], tx: Transaction | None) -> int:
        """The hot loop: pick this runner's events, decode, wrap and hand each over.

        Returns how many events were delivered. A failure goes to :meth:`_retry`; with a
        transaction it propagates instead, the batch rolls back and is redone one event per
        transaction.
        """
        sub = self.subscription
        handler: Any = sub.handler
        serializers = sub.serializers
        names = sub.event_names
        owned = self._owned
        parts = sub.partitions
        only = owned.get(0, 0) if parts == 1 else 0
        quarantined = self._quarantined
        delivered = 0
        for record in batch:
            serializer = serializers.get(record.aggregate_name)
            if serializer is None:
                continue
            if quarantined and record.position in quarantined:
                continue
            if (
                names is not None
                and record.name not in names
                and split_stored_name(record.name)[0] not in names
            ):
                continue
            if parts == 1:
                part = 0
                if record.position <= only:
                    continue
            else:
                part = partition_of(record.aggregate_name, record.aggregate_id, parts)
                checkpoint = owned.get(part)
                if checkpoint is None or record.position <= checkpoint:
                    continue
            try:
                for data in serializer.decode_all(record):
                    event = envelope(record, data)
                    result = handler(event) if tx is None else handler(event, tx)
                    if result is not None and isawaitable(result):
                        await result
            except Exception as exc:
                if tx is not None or isinstance(exc, StoreUnavailable):
                    raise
                await self._retry(part, record, exc)
            delivered += 1
        return delivered

    async def _deliver_batch(self, batch: Sequence[StoredEvent]) -> int:
        """A batched handler's delivery: this runner's events of ``batch`` in one call. If that
        fails, one at a time, each retried then parked, so a bad event holds back no other."""
        chosen = self._select(batch)
        if not chosen:
            return 0
        handler: Any = self.subscription.handler
        try:
            result = handler([event for _, record in chosen for event in self.envelopes(record)])
            if result is not None and isawaitable(result):
                await result
            return len(chosen)
        except StoreUnavailable:
            raise
        except Exception as exc:
            logger.warning(
                "subscription %r: a batch of %d events failed (%r); delivering one at a time",
                self.subscription.name,
                len(chosen),
                exc,
            )
        await self._settle()  # parking advances checkpoints too: never two commits at once
        for part, record in chosen:
            try:
                await self._call(record, None)
            except StoreUnavailable:
                raise
            except Exception as exc:
                await self._retry(part, record, exc)
        return len(chosen)

    async def _process(self, batch: Sequence[StoredEvent]) -> None:
        if self._personal:
            await self.unlock(batch)
        if self.subscription.takes_transaction:
            while batch:
                batch = batch[await self._process_slice(batch) :]
            return
        if self.subscription.batched:
            delivered = await self._deliver_batch(batch)
            self._queue(batch, delivered)
            return
        delivered = await self._deliver(batch, None)
        await self._checkpoint(batch, delivered)

    async def _checkpoint(self, batch: Sequence[StoredEvent], delivered: int) -> None:
        """Move the checkpoints past ``batch``, whose ``delivered`` events were handled."""
        async with self._transaction() as raw:
            if self._blocked:
                await self._unblock(raw, batch)
            await self._advance(raw, batch[-1].position)
        self.delivered += delivered
        self.state.subscription_progress.notify(self.subscription.name)

    def _queue(self, batch: Sequence[StoredEvent], delivered: int) -> None:
        """Checkpoint a delivered batch behind the next deliveries.

        One commit at a time runs in the background, to the last batch the handler returned
        from; batches delivered meanwhile are merged into the next one. So the checkpoints move
        in order, only past events the handler was done with (a crash never skips one), and the
        database's round trips no longer hold the handler back. A failed commit raises here or at
        the next settle (before a rebalance, an idle wait, a park or the end).
        """
        committing = self._committing
        if committing is not None and committing.done():
            self._committing = None
            committing.result()
        records = list(batch) if self._blocked else []  # for _unblock
        queued = self._to_commit
        if queued is not None:
            records = queued[1] + records
            delivered += queued[2]
        self._to_commit = (batch[-1].position, records, delivered)
        self._committed_to = batch[-1].position
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_queued())

    async def _commit_queued(self) -> None:
        try:
            while self._to_commit is not None:
                position, records, delivered = self._to_commit
                self._to_commit = None
                async with self._transaction() as raw:
                    if records:
                        await self._unblock(raw, records)
                    await self._advance(raw, position)
                self.delivered += delivered
                self.state.subscription_progress.notify(self.subscription.name)
        except BaseException:
            # Ownership may change before the next commit: what was queued is delivered again.
            self._to_commit = None
            raise

    async def _settle(self) -> None:
        """Wait until every queued checkpoint committed; raise what made a commit fail."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    async def _process_slice(self, batch: Sequence[StoredEvent]) -> int:
        """Deliver in one transaction the leading events of ``batch`` that fit its time budget;
        return how many it took."""
        taken = Slice(batch, self._budget)
        try:
            async with handler_transaction(self._transaction(), self.idle_limit) as raw:
                tx = Transaction(raw)
                delivered = await self._deliver(taken, tx)
                await tx.flush()
                if self._blocked:
                    await self._unblock(raw, taken.records)
                await self._advance(raw, taken.records[-1].position)
        except (_LostPartition, StateConflict, StoreUnavailable):
            raise
        except Exception:
            # One event failed and took the slice down with it: go one by one.
            chosen = self._select(taken.records)
            for part, record in chosen:
                await self._one_in_transaction(part, record)
            async with self._transaction() as raw:
                await self._advance(raw, taken.records[-1].position)
            delivered = len(chosen)
        self.delivered += delivered
        self.state.subscription_progress.notify(self.subscription.name)
        return taken.taken

    async def _advance(self, tx: Any, position: int, parts: Sequence[int] | None = None) -> None:
        """Move the checkpoints of ``parts`` (default: all leased) to ``position``, or fail."""
        name = self.subscription.name
        owned = self._owned
        now = time.time()
        for part in owned if parts is None else parts:
            expected = owned[part]
            if expected >= position:
                continue
            if not await tx.advance(name, part, self.member, expected, position, now):
                del owned[part]
                raise _LostPartition(part)
        # Only once every update succeeded; a rollback must leave the old checkpoints in place.
        for part in owned if parts is None else parts:
            owned[part] = max(owned[part], position)

    async def _unblock(self, tx: Any, records: Sequence[StoredEvent]) -> None:
        """Forget parked events (of a ``"stop"`` subscription) now delivered after all."""
        if self._blocked:
            for record in records:
                if record.id in self._blocked:
                    await tx.unpark(self.subscription.name, record.id)
                    self._blocked.discard(record.id)

    async def _one_in_transaction(self, part: int, record: StoredEvent) -> None:
        sub = self.subscription
        error: Exception | None = None
        attempt = 0
        for attempt in range(1, sub.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(sub.backoff(attempt - 1))
            try:
                async with handler_transaction(self._transaction(), self.idle_limit) as raw:
                    tx = Transaction(raw)
                    await self._call(record, tx)
                    await tx.flush()
                    await self._unblock(raw, [record])
                    await self._advance(raw, record.position, (part,))
                return
            except (_LostPartition, StateConflict, StoreUnavailable):
                raise
            except EventSerializationError as exc:
                error = exc  # the stored event cannot be read: no retry will change that
                break
            except Exception as exc:
                error = exc
                logger.warning(
                    "subscription %r: attempt %d at position %d failed: %r",
                    sub.name,
                    attempt,
                    record.position,
                    exc,
                )
        assert error is not None
        await self._park(part, record, error, attempt)

    async def _retry(self, part: int, record: StoredEvent, error: Exception) -> None:
        sub = self.subscription
        if isinstance(error, EventSerializationError):
            # The stored event cannot be read: no retry will change that.
            await self._park(part, record, error, 1)
            return
        for attempt in range(2, sub.max_attempts + 1):
            logger.warning(
                "subscription %r: attempt %d at position %d failed: %r",
                sub.name,
                attempt - 1,
                record.position,
                error,
            )
            await asyncio.sleep(sub.backoff(attempt - 1))
            try:
                await self._call(record, None)
                return
            except StoreUnavailable:
                raise
            except Exception as exc:
                error = exc
        await self._park(part, record, error, sub.max_attempts)

    async def _park(self, part: int, record: StoredEvent, error: Exception, attempts: int) -> None:
        sub = self.subscription
        text = f"{type(error).__name__}: {error}"
        async with self._transaction() as raw:
            await raw.park(sub.name, record, text, attempts, time.time())
            if sub.on_failure == "park":
                await self._advance(raw, record.position, (part,))
            else:
                # Everything before this event is done, in every partition this runner holds.
                await self._advance(raw, record.position - 1)
        logger.error("subscription %r parked the event at %d: %s", sub.name, record.position, text)
        if sub.on_failure == "stop":
            self.state.subscription_progress.notify(sub.name)
            raise SubscriptionStopped(sub.name, record.position, text)

    # Parked events

    async def parked(self) -> list[ParkedEvent]:
        """The events this subscription parked, in position order."""
        async with self._transaction() as tx:
            return await tx.parked(self.subscription.name)

    async def retry_parked(self, event_ids: Sequence[UUID] | None = None) -> list[ParkedEvent]:
        """Deliver parked events again, once each; return those that failed again.

        Delivery is out of the usual order (the subscription has moved on). Events a ``"stop"``
        subscription stopped at are left to the subscription itself, which delivers them when
        restarted.
        """
        sub = self.subscription
        failed: list[ParkedEvent] = []
        async with self._transaction() as raw:
            parked = await raw.parked(sub.name)
            leases = {lease.part: lease.position for lease in await raw.leases(sub.name)}
        for entry in parked:
            if event_ids is not None and entry.event_id not in event_ids:
                continue
            if entry.position > leases.get(self._part(entry), 0):
                continue
            records = await self.store.read_all(entry.position - 1, 1)
            if not records or records[0].id != entry.event_id:
                failed.append(entry)
                continue
            record = records[0]
            try:
                async with self._transaction() as raw:
                    handler_tx = Transaction(raw) if sub.takes_transaction else None
                    await self._call(record, handler_tx)
                    if handler_tx is not None:
                        await handler_tx.flush()
                    await raw.unpark(sub.name, entry.event_id)
            except Exception as exc:
                async with self._transaction() as raw:
                    await raw.park(sub.name, record, f"{type(exc).__name__}: {exc}", 1, time.time())
                failed.append(entry)
        return failed
