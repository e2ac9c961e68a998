"""The inbox: CloudEvents from a broker become commands, each message's effect once.

A user function ``decide(cloudevent) -> (aggregate_id, command) | None`` says what a message
means; ``None`` ignores it. The message's key is its CloudEvent ``source`` and ``id``, so the
same message delivered again (a redelivery after a lost ack, or the sender publishing it twice)
changes nothing. How that is made sure:

* The key is the command's idempotency key (``Signal.run_command(..., idempotency_key=...)``):
  the store keeps it atomically with the command's events, so a repeat runs nothing, whatever
  the timing, even two consumers handling the same message at the same instant. Every store of
  this library keeps keys.
* On a store that keeps none, before the command runs, the target aggregate's events are
  searched for the key, which they carry in their metadata (``inbox_key``), as policies do.

Either way the keys of handled messages are also recorded as documents with the subscription
state (read model ``inbox.<name>``), so most repeats are known without asking the store.

On a store without keys the check and the command are two steps: a message handled by two
consumers at the very same moment could run twice (brokers hand a message to one consumer at a
time, so that takes an ack deadline passing while the first consumer still works on it). On any
store, a command that produces no events leaves no key, and runs again when repeated.

A message that cannot be read, that ``decide`` fails on, or whose command is rejected, is
*poison*: it is parked (read model ``inbox-parked.<name>``, listed by :func:`inbox_parked`) with
the reason, and acknowledged so it does not block the ones after it. An unreachable store is
not poison: the receiver tries the message again, in place, until the store is back.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec

from eventsignal.application import Signal
from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    ConfigurationError,
    StoreUnavailable,
)
from eventsignal.publishing.cloudevent import CloudEvent, received
from eventsignal.stores.base import EventStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions.readmodel import ReadModel
from eventsignal.subscriptions.transaction import Transaction, state_store_for

logger = logging.getLogger("eventsignal.publishing")

Decision = tuple[str, object] | None
Decide = Callable[[CloudEvent], Decision | Awaitable[Decision]]
KEY = "inbox_key"
MAX_KEY = 200  # longer source + id pairs are hashed to stay within it


class Handled(msgspec.Struct, frozen=True):
    """A message the inbox handled: its command's aggregate, or none if it was ignored."""

    aggregate_id: str | None
    at: float


class Parked(msgspec.Struct, frozen=True, kw_only=True):
    """A poison message: why, and enough of it to find it again."""

    key: str
    source: str
    id: str
    type: str
    reason: str
    message: str
    at: float


def inbox_key(event: CloudEvent) -> str:
    """The de-duplication key of a message: its ``source`` and ``id``."""
    key = f"{event.source} {event.id}"
    if len(key) > MAX_KEY:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


class Poison(Exception):
    """A message that no redelivery will make acceptable."""


class Inbox:
    """Runs the command each received CloudEvent means, through ``signal``, once.

    ``create=True``: a command to an aggregate that does not exist creates it with the command
    (a genesis command). Handled keys and parked messages are kept with the subscription state
    of ``signal.store`` (or ``checkpoints`` for a NATS store).
    """

    def __init__(
        self,
        name: str,
        signal: Signal[Any, Any],
        decide: Decide,
        *,
        create: bool = False,
        checkpoints: SubscriptionStore | None = None,
    ) -> None:
        self.name = name
        self.signal = signal
        self.decide = decide
        self.create = create
        self.handled: ReadModel[Handled] = ReadModel(f"inbox.{name}", Handled)
        self.parked: ReadModel[Parked] = ReadModel(f"inbox-parked.{name}", Parked)
        self._checkpoints = checkpoints
        run_command = getattr(signal, "run_command", None)
        self._keyed = run_command is not None and (
            "idempotency_key" in inspect.signature(run_command).parameters
        )
        self._ready = False

    @property
    def store(self) -> EventStore:
        """The store of the inbox's Signal, where its records are kept."""
        return self.signal.store

    async def _state(self) -> Any:
        state = state_store_for(self.store, self._checkpoints)
        if not self._ready:
            await state.setup_subscriptions()
            self._ready = True
        return state

    async def _put(self, model: ReadModel[Any], key: str, value: Any) -> None:
        state = await self._state()
        async with state.subscription_transaction() as raw:
            tx = Transaction(raw)
            await model.put(tx, key, value, 0)
            await tx.flush()

    async def handle(self, event: CloudEvent) -> bool:
        """Run the command ``event`` means; ``False`` if it was handled before (or ignored).

        Raises :class:`Poison` for a message to park; :class:`~eventsignal.StoreUnavailable`
        for one to leave to a redelivery.
        """
        key = inbox_key(event)
        if await self.handled.read(self.store, key, checkpoints=self._checkpoints) is not None:
            return False
        try:
            decision = self.decide(event)
            if inspect.isawaitable(decision):
                decision = await decision
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise Poison(f"decide failed: {type(exc).__name__}: {exc}") from exc
        if decision is None:
            await self._put(self.handled, key, Handled(None, time.time()))
            return False
        aggregate_id, command = decision
        try:
            ran = await self._run(key, event, aggregate_id, command)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise Poison(
                f"command {type(command).__name__} on {self.signal.name} {aggregate_id!r} "
                f"failed: {type(exc).__name__}: {exc}"
            ) from exc
        await self._put(self.handled, key, Handled(aggregate_id, time.time()))
        return ran

    async def _run(self, key: str, event: CloudEvent, aggregate_id: str, command: object) -> bool:
        metadata = {KEY: key, "causation_id": event.id}
        if event.traceparent:
            metadata["traceparent"] = event.traceparent
        if self._keyed:
            try:
                return await self._run_keyed(key, metadata, aggregate_id, command)
            except ConfigurationError as exc:
                if "idempotency keys" not in str(exc):
                    raise
                self._keyed = False  # this store keeps none: search the events instead
        signal = self.signal
        if await self._seen(aggregate_id, key):
            return False
        if self.create and not await signal.store.exists(signal.name, aggregate_id):
            try:
                await signal.create(aggregate_id, command, metadata=metadata)
                return True
            except AggregateExists:
                if await self._seen(aggregate_id, key):
                    return False
        await signal.handle_command(aggregate_id, command, metadata=metadata)
        return True

    async def _run_keyed(
        self, key: str, metadata: dict[str, str], aggregate_id: str, command: object
    ) -> bool:
        """The command with the key as its idempotency key, which the store keeps with its
        events: a repeat runs nothing, whatever the timing."""
        signal: Any = self.signal
        if self.create and not await signal.store.exists(signal.name, aggregate_id):
            try:
                handle = await signal.create(
                    aggregate_id, command, metadata=metadata, idempotency_key=key
                )
                return not handle.repeated
            except AggregateExists:
                pass
        result = await signal.run_command(
            aggregate_id, command, metadata=metadata, idempotency_key=key
        )
        return not result.repeated

    async def _seen(self, aggregate_id: str, key: str) -> bool:
        try:
            stored = await self.signal.store.read_aggregate(self.signal.name, aggregate_id)
        except AggregateNotFound:
            return False
        return any(e.metadata.get(KEY) == key for e in stored)

    async def park(self, event: CloudEvent | None, body: bytes, reason: str) -> None:
        """Record a poison message (``event`` is ``None`` when it could not be read)."""
        source = event.source if event else ""
        ident = event.id if event else hashlib.sha256(body).hexdigest()
        key = inbox_key(event) if event else f"unreadable {ident}"
        parked = Parked(
            key=key,
            source=source,
            id=ident,
            type=event.type if event else "",
            reason=reason,
            message=body[:4096].decode(errors="replace"),
            at=time.time(),
        )
        await self._put(self.parked, key, parked)


async def inbox_parked(
    store: EventStore, name: str, *, checkpoints: SubscriptionStore | None = None
) -> list[Parked]:
    """The messages inbox ``name`` parked, by key."""
    model: ReadModel[Parked] = ReadModel(f"inbox-parked.{name}", Parked)
    return [d.value for d in await model.read_all(store, checkpoints=checkpoints)]


Verdict = Literal["done", "parked", "retry"]


async def receive(
    inbox: Inbox, headers: Mapping[str, Any] | None, body: bytes, prefix: str = "ce-"
) -> Verdict:
    """Hand one broker message to ``inbox``: ``"done"`` and ``"parked"`` are to be acknowledged,
    ``"retry"`` (the store is unreachable) left for redelivery."""
    try:
        event = received(headers, body, prefix)
    except Exception as exc:
        reason = f"not a CloudEvent with JSON data: {type(exc).__name__}: {exc}"
        return await _park(inbox, None, body, reason)
    try:
        await inbox.handle(event)
    except Poison as exc:
        return await _park(inbox, event, body, str(exc))
    except StoreUnavailable:
        return "retry"
    return "done"


async def _park(inbox: Inbox, event: CloudEvent | None, body: bytes, reason: str) -> Verdict:
    try:
        await inbox.park(event, body, reason)
    except StoreUnavailable:
        return "retry"
    logger.error("inbox %r parked a message: %s", inbox.name, reason)
    return "parked"
