"""Subscription state in memory, beside a :class:`~eventsignal.stores.MemoryStore`'s events.

Plain dicts keyed like the SQL tables. A transaction writes into an overlay of its own: its reads
see the committed state with its own writes on top, and the overlay is applied in one step
(no ``await`` in between, so atomically for every task) when the block ends cleanly. Writing
transactions take turns (a lock), so a compare-and-set decided inside one still holds at its
commit; reads (:meth:`MemorySubscriptions.subscription_reads`) never wait for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.subscription_state import (
    Lease,
    ParkedEvent,
    StoredDocument,
    SubscriptionProgress,
    SubscriptionRow,
    overview_rows,
    parked_event,
)

K = TypeVar("K")
V = TypeVar("V")

_GONE: Any = object()  # marks a key the transaction deleted


class _Checkpoint(msgspec.Struct, frozen=True):
    parts: int
    position: int
    owner: str | None = None
    lease_until: float = 0.0
    updated_at: float = 0.0


class _Tables:
    """Every table of the state: checkpoints, members, parked, quarantine, documents."""

    __slots__ = ("checkpoints", "documents", "members", "parked", "quarantine")

    def __init__(self) -> None:
        self.checkpoints: dict[tuple[str, int], _Checkpoint] = {}
        self.members: dict[tuple[str, str], float] = {}
        self.parked: dict[tuple[str, UUID], ParkedEvent] = {}
        self.quarantine: dict[int, str] = {}
        self.documents: dict[tuple[str, str], StoredDocument] = {}


class _Overlay(dict[K, V]):
    """A transaction's writes to one table, over the committed one."""

    def __init__(self, base: dict[K, V]) -> None:
        super().__init__()
        self.base = base

    def get_current(self, key: K) -> V | None:
        value = self.get(key, None)
        if value is None:
            return self.base.get(key)
        return None if value is _GONE else value

    def items_current(self) -> Iterator[tuple[K, V]]:
        for key, value in self.base.items():
            if key not in self:
                yield key, value
        for key, value in self.items():
            if value is not _GONE:
                yield key, value

    def delete(self, key: K) -> None:
        self[key] = _GONE

    def apply(self) -> None:
        for key, value in self.items():
            if value is _GONE:
                self.base.pop(key, None)
            else:
                self.base[key] = value


class MemorySubscriptionState:
    """A :class:`~eventsignal.stores.subscription_state.SubscriptionState` in memory."""

    idle_limit: float | None = None

    def __init__(self, tables: _Tables, *, writable: bool) -> None:
        self._writable = writable
        self.checkpoints = _Overlay(tables.checkpoints)
        self.members_ = _Overlay(tables.members)
        self.parked_ = _Overlay(tables.parked)
        self.quarantine_ = _Overlay(tables.quarantine)
        self.documents_ = _Overlay(tables.documents)

    @property
    def sql(self) -> None:
        return None

    def _overlays(self) -> tuple[_Overlay[Any, Any], ...]:
        return (self.checkpoints, self.members_, self.parked_, self.quarantine_, self.documents_)

    def _write(self) -> None:
        if not self._writable:
            raise ConfigurationError(
                "subscription_reads() is a read-only view: write in a transaction"
            )

    def commit(self) -> None:
        for overlay in self._overlays():
            overlay.apply()

    def _rows(self, name: str) -> Iterator[tuple[int, _Checkpoint]]:
        return ((part, row) for (sub, part), row in self.checkpoints.items_current() if sub == name)

    # Checkpoints and leases

    async def ensure(self, name: str, parts: int, position: int) -> None:
        found = sorted({row.parts for _, row in self._rows(name)})
        if found and found != [parts]:
            raise ConfigurationError(
                f"subscription {name!r} is stored with {found} partitions, not {parts}; "
                "rebuild it under a new name to change its partitioning"
            )
        for part in range(parts):
            if self.checkpoints.get_current((name, part)) is None:
                self._write()
                self.checkpoints[(name, part)] = _Checkpoint(parts, position)

    async def leases(self, name: str) -> list[Lease]:
        return [
            Lease(part, row.position, row.owner, row.lease_until)
            for part, row in sorted(self._rows(name), key=lambda item: item[0])
        ]

    async def claim(
        self, name: str, part: int, member: str, now: float, until: float
    ) -> int | None:
        row = self.checkpoints.get_current((name, part))
        if row is None or not (row.owner is None or row.owner == member or row.lease_until < now):
            return None
        self._write()
        self.checkpoints[(name, part)] = msgspec.structs.replace(
            row, owner=member, lease_until=until
        )
        return row.position

    async def renew(self, name: str, member: str, until: float) -> None:
        self._write()
        for part, row in list(self._rows(name)):
            if row.owner == member:
                self.checkpoints[(name, part)] = msgspec.structs.replace(row, lease_until=until)
        self.members_[(name, member)] = until

    async def members(self, name: str, now: float) -> list[str]:
        alive = []
        for (sub, member), expires in list(self.members_.items_current()):
            if sub != name:
                continue
            if expires < now - 3600:
                if self._writable:  # housekeeping, left to transactions: reads write nothing
                    self.members_.delete((sub, member))
            elif expires >= now:
                alive.append(member)
        return sorted(alive)

    async def release(self, name: str, member: str, part: int | None = None) -> None:
        self._write()
        for each, row in list(self._rows(name)):
            if row.owner == member and (part is None or each == part):
                self.checkpoints[(name, each)] = msgspec.structs.replace(
                    row, owner=None, lease_until=0.0
                )
        if part is None:
            self.members_.delete((name, member))

    async def advance(
        self, name: str, part: int, member: str, expected: int, position: int, now: float
    ) -> bool:
        row = self.checkpoints.get_current((name, part))
        if row is None or row.owner != member or row.position != expected:
            return False
        self._write()
        self.checkpoints[(name, part)] = msgspec.structs.replace(
            row, position=position, updated_at=now
        )
        return True

    async def reset(self, name: str) -> None:
        self._write()
        for part, row in list(self._rows(name)):
            self.checkpoints[(name, part)] = msgspec.structs.replace(
                row, position=0, owner=None, lease_until=0.0
            )
        for key in [k for k, _ in self.parked_.items_current() if k[0] == name]:
            self.parked_.delete(key)

    async def progress(self, name: str) -> int | None:
        positions = [row.position for _, row in self._rows(name)]
        return min(positions) if positions else None

    async def overview(self, now: float) -> list[SubscriptionRow]:
        return overview_rows(
            ((name, row) for (name, _), row in self.checkpoints.items_current()),
            (name for (name, _), _ in self.parked_.items_current()),
            now,
        )

    # Parked events

    async def park(
        self, name: str, event: StoredEvent, error: str, attempts: int, now: float
    ) -> None:
        self._write()
        earlier = self.parked_.get_current((name, event.id))
        before = earlier.attempts if earlier is not None else 0
        self.parked_[(name, event.id)] = parked_event(name, event, error, attempts + before, now)

    async def parked(self, name: str | None = None) -> list[ParkedEvent]:
        found = [p for (sub, _), p in self.parked_.items_current() if name in (None, sub)]
        return sorted(found, key=lambda p: (p.subscription, p.position))

    async def unpark(self, name: str, event_id: UUID) -> None:
        self._write()
        self.parked_.delete((name, event_id))

    # Quarantined events

    async def quarantine(self, position: int, reason: str, now: float) -> None:
        self._write()
        self.quarantine_[position] = reason

    async def quarantined(self) -> dict[int, str]:
        return dict(sorted(self.quarantine_.items_current()))

    async def unquarantine(self, position: int) -> bool:
        if self.quarantine_.get_current(position) is None:
            return False
        self._write()
        self.quarantine_.delete(position)
        return True

    # Read-model documents

    async def document(self, model: str, key: str) -> StoredDocument | None:
        return self.documents_.get_current((model, key))

    async def documents(self, model: str) -> list[StoredDocument]:
        found = [d for (m, _), d in self.documents_.items_current() if m == model]
        return sorted(found, key=lambda d: d.key)

    async def document_models(self) -> list[str]:
        return sorted({model for (model, _), _ in self.documents_.items_current()})

    async def put_documents(self, model_rows: Iterable[tuple[str, StoredDocument]]) -> None:
        self._write()
        for model, document in model_rows:
            self.documents_[(model, document.key)] = document

    async def delete_documents(self, keys: Iterable[tuple[str, str]]) -> None:
        self._write()
        for key in keys:
            self.documents_.delete(key)

    async def clear_documents(self, model: str) -> None:
        self._write()
        for key in [k for k, _ in self.documents_.items_current() if k[0] == model]:
            self.documents_.delete(key)


class MemorySubscriptions:
    """The :class:`~eventsignal.stores.subscription_state.SubscriptionStore` half of a
    :class:`~eventsignal.stores.MemoryStore`."""

    _tables: _Tables
    _turn: asyncio.Lock
    _progress: SubscriptionProgress

    def _init_subscriptions(self) -> None:
        self._tables = _Tables()
        self._turn = asyncio.Lock()
        self._progress = SubscriptionProgress()

    @property
    def subscription_progress(self) -> SubscriptionProgress:
        return self._progress

    async def setup_subscriptions(self) -> None:
        return None

    def subscription_transaction(
        self, *, idle_limit: float | None = None
    ) -> AbstractAsyncContextManager[MemorySubscriptionState]:
        return self._transaction()

    def subscription_reads(self) -> AbstractAsyncContextManager[MemorySubscriptionState]:
        return _reading(self._tables)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[MemorySubscriptionState]:
        async with self._turn:
            state = MemorySubscriptionState(self._tables, writable=True)
            yield state
            state.commit()


@asynccontextmanager
async def _reading(tables: _Tables) -> AsyncIterator[MemorySubscriptionState]:
    yield MemorySubscriptionState(tables, writable=False)
