"""Reading a store one page at a time, for people looking into it.

Every listing is paged by a key (an aggregate's type and id, a version, a position), never by an
offset: the next page starts after the last row shown, so page 1,000 of a large store costs what
page 1 does. SQL stores answer in their own queries (the tables are the same on SQLite and
PostgreSQL); other stores (memory, NATS) through the event-store contract.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import msgspec

from eventsignal.stores.base import EventStore, PagedReads, StoredEvent
from eventsignal.stores.sql import SQLStore, for_dialect

PAGE = 50  # rows a page shows
LOG_SCAN = 5_000  # events a filtered log page reads at most before it stops looking

# The browser shows the default tenant's streams, as the store's own reads do.
_TYPES = (
    "SELECT aggregate_name, count(*) FROM eventsignal_aggregates WHERE tenant = '' "
    "GROUP BY aggregate_name ORDER BY aggregate_name"
)
_FIND = (
    "SELECT aggregate_name, aggregate_id, version FROM eventsignal_aggregates "
    "WHERE tenant = '' AND (aggregate_name, aggregate_id) > (?, ?) "
    "AND substr(aggregate_id, 1, CAST(? AS INTEGER)) = ? "
)
_FIND_ORDER = "ORDER BY aggregate_name, aggregate_id LIMIT ?"
_VERSION = (
    "SELECT version FROM eventsignal_aggregates "
    "WHERE tenant = '' AND aggregate_name = ? AND aggregate_id = ?"
)
_BY_ID = "SELECT position FROM eventsignal_events WHERE event_id = ? AND tenant = ''"


class TypeCount(msgspec.Struct, frozen=True):
    """An aggregate type and how many aggregates of it the store holds."""

    name: str
    aggregates: int


class AggregateRow(msgspec.Struct, frozen=True):
    """One aggregate in a listing: type, id and the version its latest event reached."""

    aggregate_name: str
    aggregate_id: str
    version: int


class LogFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events of the log to show: of one event type, of one aggregate type (``cart``) or
    aggregate (``cart/c-1``), correlated with one event id; empty fields match everything."""

    event_name: str = ""
    aggregate: str = ""
    correlation: str = ""


async def aggregate_types(store: EventStore) -> list[TypeCount]:
    """Every aggregate type with its count of aggregates, by name."""
    if isinstance(store, SQLStore):
        async with store.read_transaction() as tx:
            rows = await tx.fetchall(_TYPES)
        return [TypeCount(str(name), int(count)) for name, count in rows]
    counts: dict[str, int] = {}
    for info in await store.aggregates():
        counts[info.aggregate_name] = counts.get(info.aggregate_name, 0) + 1
    return [TypeCount(name, counts[name]) for name in sorted(counts)]


async def find_aggregates(
    store: EventStore,
    *,
    aggregate_name: str | None = None,
    prefix: str = "",
    after: tuple[str, str] = ("", ""),
    limit: int = PAGE,
) -> tuple[list[AggregateRow], tuple[str, str] | None]:
    """Aggregates whose id starts with ``prefix`` (of one type, or all), ordered by type and id,
    after the ``(type, id)`` key ``after``; and the key of the next page, if there is one."""
    if isinstance(store, SQLStore):
        sql = _FIND + ("AND aggregate_name = ? " if aggregate_name is not None else "")
        params: list[object] = [after[0], after[1], len(prefix), prefix]
        if aggregate_name is not None:
            params.append(aggregate_name)
        async with store.read_transaction() as tx:
            found = await tx.fetchall(_sql(store, sql + _FIND_ORDER), [*params, limit + 1])
        rows = [AggregateRow(str(n), str(i), int(v)) for n, i, v in found]
    else:
        rows = sorted(
            (
                AggregateRow(a.aggregate_name, a.aggregate_id, a.version)
                for a in await store.aggregates(aggregate_name)
                if a.aggregate_id.startswith(prefix) and (a.aggregate_name, a.aggregate_id) > after
            ),
            key=lambda row: (row.aggregate_name, row.aggregate_id),
        )[: limit + 1]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].aggregate_name, rows[-1].aggregate_id) if more else None)


async def aggregate_version(
    store: EventStore, aggregate_name: str, aggregate_id: str
) -> int | None:
    """The version an aggregate reached, or ``None`` when the store has no such aggregate."""
    if isinstance(store, SQLStore):
        async with store.read_transaction() as tx:
            row = await tx.fetchone(_sql(store, _VERSION), [aggregate_name, aggregate_id])
        return None if row is None else int(row[0])
    for info in await store.aggregates(aggregate_name):
        if info.aggregate_id == aggregate_id:
            return info.version
    return None


async def stream_page(
    store: EventStore,
    aggregate_name: str,
    aggregate_id: str,
    after_version: int = 0,
    limit: int = PAGE,
) -> tuple[list[StoredEvent], bool]:
    """Up to ``limit`` events of one aggregate after ``after_version``, and whether more follow."""
    if isinstance(store, PagedReads):
        found = await store.read_aggregate_page(
            aggregate_name, aggregate_id, after_version, limit + 1
        )
    else:  # the contract has no limit: read the rest of the stream, keep a page
        found = await store.read_aggregate(aggregate_name, aggregate_id, after_version)
    return list(found[:limit]), len(found) > limit


async def log_page(
    store: EventStore,
    *,
    after: int = 0,
    filters: LogFilter | None = None,
    limit: int = PAGE,
) -> tuple[list[StoredEvent], int, bool]:
    """Events of the global log after position ``after`` that match the filters, in position
    order: the page, the position reading stopped at (where the next page starts), and whether
    the log goes on past it.

    ``filters.aggregate`` matches an aggregate's type, or ``type/id`` one aggregate. A filter that
    matches little reads at most :data:`LOG_SCAN` events per page, then hands back what it found.
    """
    matches = _matcher(filters or LogFilter())
    shown: list[StoredEvent] = []
    position, scanned = after, 0
    while len(shown) < limit and scanned < LOG_SCAN:
        batch = await store.read_all(position, limit if matches is None else 500)
        if not batch:
            return shown, position, False
        for event in batch:
            position = event.position
            scanned += 1
            if matches is None or matches(event):
                shown.append(event)
                if len(shown) == limit:
                    break
    return shown, position, True


def _matcher(filters: LogFilter) -> Callable[[StoredEvent], bool] | None:
    event_name, correlation = filters.event_name, filters.correlation
    if not (event_name or filters.aggregate or correlation):
        return None
    kind, _, ident = filters.aggregate.partition("/")

    def matches(event: StoredEvent) -> bool:
        return (
            (not event_name or event.name == event_name)
            and (not kind or event.aggregate_name == kind)
            and (not ident or event.aggregate_id == ident)
            and (
                not correlation
                or event.metadata.get("correlation_id") == correlation
                or str(event.id) == correlation
            )
        )

    return matches


async def event_at(store: EventStore, position: int) -> StoredEvent | None:
    """The event at a global position, or ``None``."""
    found = await store.read_all(position - 1, 1) if position > 0 else ()
    return found[0] if found and found[0].position == position else None


async def position_of(store: EventStore, event_id: UUID) -> int | None:
    """The position of the event with this id, where the store can look it up (SQL stores)."""
    if not isinstance(store, SQLStore):
        return None
    key: object = event_id if store.dialect == "postgres" else event_id.bytes
    async with store.read_transaction() as tx:
        row = await tx.fetchone(_sql(store, _BY_ID), [key])
        if row is None and store.dialect == "sqlite":  # ids written as text by older code
            row = await tx.fetchone(_sql(store, _BY_ID), [str(event_id)])
    return None if row is None else int(row[0])


def _sql(store: SQLStore, statement: str) -> str:
    return for_dialect(statement, store.dialect)
