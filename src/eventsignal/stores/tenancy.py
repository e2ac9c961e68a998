"""Tenants: many customers in one store, one log and one connection pool, never seeing each other.

A tenant is part of every stream's identity: ``("acme", "cart", "c-1")`` and ``("globex", "cart",
"c-1")`` are two aggregates. Stores that know tenants (:class:`TenantAware`) keep the tenant
beside each stream and event and take it as a keyword on every call; :class:`TenantStore` is the
view that passes it, so code written against the plain store contract (a Signal, a subscription
runner, the CLI) works inside one tenant without knowing tenants exist.

The tenant ``""`` is the default: what a store without tenants has always held. A view of every
tenant (``store.for_tenant(None)``) reads the whole log, each event carrying its tenant, and
refuses writes: a write always belongs to one tenant.

Subscription state (checkpoints, parked events, read-model documents) stays in the store's own
tables, under names qualified by the tenant (``revenue@acme``; ``revenue@*`` for a subscription
over every tenant), so one subscription name serves every tenant separately.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import msgspec

from eventsignal.domain.errors import ConfigurationError, InvalidAggregateId
from eventsignal.stores.base import AggregateInfo, FoldRow, Snapshot, StoredEvent, StoreStats
from eventsignal.stores.subscription_state import (
    Lease,
    ParkedEvent,
    StoredDocument,
    SubscriptionProgress,
    SubscriptionRow,
    SubscriptionState,
    SubscriptionStore,
)

DEFAULT_TENANT = ""
EVERY_TENANT = "*"  # the qualifier of subscriptions over every tenant; no tenant is named so
MAX_TENANT_LENGTH = 100
_QUALIFIER = "@"


def validate_tenant(value: object) -> str:
    """Return ``value`` if it can name a tenant: letters, digits, ``_``, ``-`` and ``.``, at most
    100 of them. The same rule on every store keeps tenant names safe in SQL settings, subjects
    and qualified names."""
    if type(value) is not str or not value:
        raise InvalidAggregateId(value, "a tenant must be a non-empty string")
    if len(value) > MAX_TENANT_LENGTH:
        raise InvalidAggregateId(value, f"a tenant name is at most {MAX_TENANT_LENGTH} long")
    if not all(ch.isascii() and (ch.isalnum() or ch in "_-.") for ch in value):
        raise InvalidAggregateId(
            value, "a tenant name may hold ASCII letters, digits, '_', '-' and '.' only"
        )
    return value


def qualified(name: str, tenant: str) -> str:
    """The name a tenant's subscription, model or key is kept under in shared tables."""
    return f"{name}{_QUALIFIER}{tenant}" if tenant else name


@runtime_checkable
class TenantAware(Protocol):
    """A store that keeps a tenant beside each stream: the plain contract, plus ``tenant=``.

    ``tenant`` is a tenant's name, or ``""`` for the default tenant; reads that span streams
    (``read_all``, ``aggregates``) also take ``None`` for every tenant. Checked by
    :class:`eventsignal.testing.TenantCompliance`.
    """

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[int]:
        """Record a new aggregate of ``tenant``, as :meth:`EventStore.create` does."""
        ...

    async def exists(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> bool:
        """Whether ``tenant`` holds the aggregate."""
        ...

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[int]:
        """Append to the aggregate of ``tenant``; another tenant's aggregate of the same id is
        not found."""
        ...

    async def read_aggregate(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        """The events of the aggregate of ``tenant`` after ``after_version``."""
        ...

    async def read_aggregate_page(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int,
        limit: int,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        """A page of the events of the aggregate of ``tenant``."""
        ...

    def read_aggregate_data(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> AsyncGenerator[Sequence[FoldRow], None]:
        """What a rebuild folds of the aggregate of ``tenant`` (see
        :class:`~eventsignal.stores.base.FoldReads`)."""
        ...

    async def read_all(
        self, after_position: int = 0, limit: int = 1000, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[StoredEvent]:
        """The events of ``tenant`` (``None``: of every tenant, each naming its own) after
        ``after_position``, in the one global order."""
        ...

    async def aggregates(
        self, aggregate_name: str | None = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[AggregateInfo]:
        """The aggregates of ``tenant`` (``None``: of every tenant)."""
        ...

    async def tenants(self) -> Sequence[str]:
        """The tenants that hold at least one stream, sorted (the default one as ``""``)."""
        ...

    async def open(self) -> None:
        """Connect, or count one more user."""
        ...

    async def close(self) -> None:
        """Count one user less."""
        ...

    async def head_position(self, *, tenant: str | None = DEFAULT_TENANT) -> int:
        """The position of the last event of ``tenant`` (``None``: of any tenant), so a
        subscription within one tenant is caught up once it passed that tenant's last event."""
        ...

    async def wait_for_events(self, after_position: int) -> None:
        """Return once an event of any tenant past ``after_position`` may be readable."""
        ...

    @property
    def stats(self) -> StoreStats:
        """The counters of the whole store."""
        ...


async def wait_within(store: Any, tenant: str | None, after_position: int) -> None:
    """``wait_for_events`` for a reader of one tenant's events (``None``: of every tenant).

    Other tenants' events must not wake such a reader over and over (it would find nothing new
    and wait again at once): it waits past the whole log's head, read before its own tenant's
    head so that an event of its own landing in between is not missed. A store without
    tenants, or a log holding nothing past ``after_position``, is waited on as it is.
    """
    if tenant is None or isinstance(store, TenantStore) or not isinstance(store, TenantAware):
        await store.wait_for_events(after_position)  # a view knows its own tenant
        return
    everyone = await store.head_position(tenant=None)
    if everyone > after_position:
        if await store.head_position(tenant=tenant) > after_position:
            return
        after_position = everyone
    await store.wait_for_events(after_position)


def tenant_store(store: object, tenant: str | None) -> TenantStore:
    """The view of ``store`` for one tenant (``None``: every tenant, read-only)."""
    if tenant is not None:
        validate_tenant(tenant)
    if isinstance(store, TenantStore):
        store = store.store
    if not isinstance(store, TenantAware):
        raise ConfigurationError(
            f"{type(store).__name__} keeps no tenants: use MemoryStore, SQLiteStore or "
            "PostgresStore for a multi-tenant application"
        )
    return TenantStore(store, tenant)


class TenantStore:
    """One tenant's view of a :class:`TenantAware` store (or every tenant's, read-only).

    It shares the store's connections, files and group commit; opening and closing it counts one
    user of the store, as the store itself does. Everything else a store may offer (stream
    lifecycle, dynamic consistency boundaries, idempotency keys, subject keys) is not offered
    here yet, so a Signal asking for it on a tenant says so instead of reaching across tenants.
    """

    __slots__ = ("_scope", "_snapshot_store", "store", "tenant")

    @property
    def tenant_root(self) -> TenantAware:
        """The store this is a view of (where, say, subject keys of every tenant are kept)."""
        return self.store

    def __init__(self, store: TenantAware, tenant: str | None) -> None:
        self.store = store
        self.tenant = tenant
        self._scope = DEFAULT_TENANT if tenant is None else tenant
        self._snapshot_store: Any = None  # found at the first snapshot, then kept

    def __repr__(self) -> str:
        which = "every tenant" if self.tenant is None else f"tenant {self.tenant!r}"
        return f"{self.store!r} ({which})"

    def _writable(self) -> str:
        if self.tenant is None:
            raise ConfigurationError(
                "the view of every tenant only reads: write through store.for_tenant(name)"
            )
        return self.tenant

    # Lifecycle: the view is one more user of the store.

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> TenantStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        """Whether the store under the view is open."""
        return bool(getattr(self.store, "is_open", True))

    @property
    def stats(self) -> StoreStats:
        return self.store.stats

    # Events

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
    ) -> Sequence[int]:
        return await self.store.create(
            aggregate_name, aggregate_id, events, created_at=created_at, tenant=self._writable()
        )

    async def exists(self, aggregate_name: str, aggregate_id: str) -> bool:
        return await self.store.exists(aggregate_name, aggregate_id, tenant=self._scope)

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]:
        return await self.store.append(
            aggregate_name, aggregate_id, expected_version, events, tenant=self._writable()
        )

    async def read_aggregate(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> Sequence[StoredEvent]:
        return await self.store.read_aggregate(
            aggregate_name, aggregate_id, after_version, tenant=self._scope
        )

    async def read_aggregate_data(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> AsyncGenerator[Sequence[FoldRow], None]:
        """What a rebuild folds of the tenant's aggregate (see
        :class:`~eventsignal.stores.base.FoldReads`)."""
        async with aclosing(
            self.store.read_aggregate_data(
                aggregate_name, aggregate_id, after_version, tenant=self._scope
            )
        ) as chunks:
            async for rows in chunks:
                yield rows

    async def read_aggregate_page(
        self, aggregate_name: str, aggregate_id: str, after_version: int, limit: int
    ) -> Sequence[StoredEvent]:
        return await self.store.read_aggregate_page(
            aggregate_name, aggregate_id, after_version, limit, tenant=self._scope
        )

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> Sequence[StoredEvent]:
        return await self.store.read_all(after_position, limit, tenant=self.tenant)

    async def head_position(self) -> int:
        return await self.store.head_position(tenant=self.tenant)

    async def aggregates(self, aggregate_name: str | None = None) -> Sequence[AggregateInfo]:
        return await self.store.aggregates(aggregate_name, tenant=self.tenant)

    async def wait_for_events(self, after_position: int) -> None:
        await wait_within(self.store, self.tenant, after_position)

    # Snapshots

    def _snapshots(self) -> Any:
        snapshots = self._snapshot_store
        if snapshots is None:
            from eventsignal.stores.snapshots import snapshot_store_for

            snapshots = snapshot_store_for(self.store)
            if snapshots is None:
                raise ConfigurationError(f"{type(self.store).__name__} keeps no snapshots")
            self._snapshot_store = snapshots
        return snapshots

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._snapshots().save_snapshot(snapshot, tenant=self._writable())

    async def load_snapshot(self, aggregate_name: str, aggregate_id: str) -> Snapshot | None:
        found: Snapshot | None = await self._snapshots().load_snapshot(
            aggregate_name, aggregate_id, tenant=self._scope
        )
        return found

    # Subscription state, under qualified names in the store's own tables.

    def _subscriptions(self) -> SubscriptionStore:
        store = self.store
        if not isinstance(store, SubscriptionStore):
            raise ConfigurationError(f"{type(store).__name__} keeps no subscription state")
        return store

    @property
    def subscription_progress(self) -> SubscriptionProgress:
        """The store's in-process wake-ups, shared by every tenant."""
        return self._subscriptions().subscription_progress

    async def setup_subscriptions(self) -> None:
        """Create what the store's subscription state needs, once for every tenant."""
        await self._subscriptions().setup_subscriptions()

    @asynccontextmanager
    async def _scoped(
        self, state: AbstractAsyncContextManager[SubscriptionState]
    ) -> AsyncIterator[SubscriptionState]:
        async with state as inner:
            # The view of every tenant keeps its subscriptions apart from the default tenant's.
            yield _TenantState(inner, EVERY_TENANT if self.tenant is None else self.tenant)

    def subscription_transaction(
        self, *, idle_limit: float | None = None
    ) -> AbstractAsyncContextManager[SubscriptionState]:
        """A transaction on this tenant's subscription state."""
        return self._scoped(self._subscriptions().subscription_transaction(idle_limit=idle_limit))

    def subscription_reads(self) -> AbstractAsyncContextManager[SubscriptionState]:
        """A read view of this tenant's subscription state."""
        return self._scoped(self._subscriptions().subscription_reads())


class _TenantState:
    """A :class:`SubscriptionState` whose subscription and model names belong to one tenant.

    Listings (``overview``, ``parked``, ``document_models``) show the tenant's own entries only,
    under their plain names. Quarantine is by global position, which no two tenants share.
    """

    def __init__(self, inner: SubscriptionState, tenant: str) -> None:
        self.inner = inner
        self.tenant = tenant
        self.idle_limit = inner.idle_limit
        self._suffix = _QUALIFIER + tenant

    @property
    def sql(self) -> Any | None:
        return self.inner.sql

    def _q(self, name: str) -> str:
        return qualified(name, self.tenant)

    def _own(self, name: str) -> str | None:
        """The plain name of a qualified one of this tenant, else ``None``."""
        if not self.tenant:
            return None if _QUALIFIER in name else name
        return name[: -len(self._suffix)] if name.endswith(self._suffix) else None

    async def ensure(self, name: str, parts: int, position: int) -> None:
        await self.inner.ensure(self._q(name), parts, position)

    async def leases(self, name: str) -> list[Lease]:
        return await self.inner.leases(self._q(name))

    async def claim(
        self, name: str, part: int, member: str, now: float, until: float
    ) -> int | None:
        return await self.inner.claim(self._q(name), part, member, now, until)

    async def renew(self, name: str, member: str, until: float) -> None:
        await self.inner.renew(self._q(name), member, until)

    async def members(self, name: str, now: float) -> list[str]:
        return await self.inner.members(self._q(name), now)

    async def release(self, name: str, member: str, part: int | None = None) -> None:
        await self.inner.release(self._q(name), member, part)

    async def advance(
        self, name: str, part: int, member: str, expected: int, position: int, now: float
    ) -> bool:
        return await self.inner.advance(self._q(name), part, member, expected, position, now)

    async def reset(self, name: str) -> None:
        await self.inner.reset(self._q(name))

    async def progress(self, name: str) -> int | None:
        return await self.inner.progress(self._q(name))

    async def overview(self, now: float) -> list[SubscriptionRow]:
        rows = []
        for row in await self.inner.overview(now):
            own = self._own(row.name)
            if own is not None:
                rows.append(_renamed(row, own))
        return rows

    async def park(
        self, name: str, event: StoredEvent, error: str, attempts: int, now: float
    ) -> None:
        await self.inner.park(self._q(name), event, error, attempts, now)

    async def parked(self, name: str | None = None) -> list[ParkedEvent]:
        found = await self.inner.parked(None if name is None else self._q(name))
        kept = []
        for event in found:
            own = self._own(event.subscription)
            if own is not None:
                kept.append(_renamed(event, own, field="subscription"))
        return kept

    async def unpark(self, name: str, event_id: UUID) -> None:
        await self.inner.unpark(self._q(name), event_id)

    async def quarantine(self, position: int, reason: str, now: float) -> None:
        await self.inner.quarantine(position, reason, now)

    async def quarantined(self) -> dict[int, str]:
        return await self.inner.quarantined()

    async def unquarantine(self, position: int) -> bool:
        return await self.inner.unquarantine(position)

    async def document(self, model: str, key: str) -> StoredDocument | None:
        return await self.inner.document(self._q(model), key)

    async def documents(self, model: str) -> list[StoredDocument]:
        return await self.inner.documents(self._q(model))

    async def document_models(self) -> list[str]:
        models = (self._own(model) for model in await self.inner.document_models())
        return sorted(model for model in models if model is not None)

    async def put_documents(self, model_rows: Iterable[tuple[str, StoredDocument]]) -> None:
        await self.inner.put_documents((self._q(model), doc) for model, doc in model_rows)

    async def delete_documents(self, keys: Iterable[tuple[str, str]]) -> None:
        await self.inner.delete_documents((self._q(model), key) for model, key in keys)

    async def clear_documents(self, model: str) -> None:
        await self.inner.clear_documents(self._q(model))


def _renamed(row: Any, name: str, field: str = "name") -> Any:
    return msgspec.structs.replace(row, **{field: name})
