"""Stream lifecycle seen from a :class:`~eventsignal.Signal`: archive, restore, delete,
truncate, and what reads make of a stream that went through them.

The store does the work (:mod:`eventsignal.stores.lifecycle`); the Signal adds what only it
knows: its pool (an archived or deleted aggregate leaves it at once in this process; other
processes learn it from the store at their next command), its snapshots (a truncation needs one
this code can decode, not merely one the store holds) and the reads that meet a closed or
truncated stream (a typed error instead of an empty or wrong state).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsignal.domain.errors import (
    AggregateArchived,
    AggregateDeleted,
    HistoryTruncated,
    NoUsableSnapshot,
    VersionOutOfRange,
)
from eventsignal.domain.identity import validate_id
from eventsignal.pool import LiveAggregate
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.lifecycle import (
    LifecycleResult,
    LifecycleStore,
    StreamStatus,
    lifecycle_of,
)

if TYPE_CHECKING:
    from eventsignal.application import Signal


async def stream_status(signal: Signal[Any, Any], aggregate_id: str) -> StreamStatus:
    signal._check_started()
    store = lifecycle_of(signal.store, "stream_status")
    return await store.stream_status(signal.name, validate_id(aggregate_id))


async def archive(signal: Signal[Any, Any], aggregate_id: str) -> LifecycleResult:
    signal._check_started()
    store = lifecycle_of(signal.store, "archive")
    try:
        return await store.archive(signal.name, validate_id(aggregate_id))
    finally:
        signal._pool.discard(aggregate_id)


async def restore(signal: Signal[Any, Any], aggregate_id: str) -> LifecycleResult:
    signal._check_started()
    store = lifecycle_of(signal.store, "restore")
    signal._pool.discard(aggregate_id)
    return await store.restore(signal.name, validate_id(aggregate_id))


async def delete(signal: Signal[Any, Any], aggregate_id: str) -> LifecycleResult:
    signal._check_started()
    store = lifecycle_of(signal.store, "delete")
    try:
        return await store.delete(signal.name, validate_id(aggregate_id))
    finally:
        signal._pool.discard(aggregate_id)


async def truncate_before(
    signal: Signal[Any, Any], aggregate_id: str, version: int
) -> LifecycleResult:
    """Remove the events before ``version`` once a snapshot this Signal can use covers them."""
    signal._check_started()
    store = lifecycle_of(signal.store, "truncate_before")
    validate_id(aggregate_id)
    snapshotter = signal._snapshotter
    snapshot_version = None
    if version > 1:
        if snapshotter is None:
            raise NoUsableSnapshot(
                signal.name, aggregate_id, version, f"{signal.name} is configured without snapshots"
            )
        restored = await snapshotter.restore(aggregate_id)
        if restored is None:
            reason = "it has no snapshot this code can read"
            raise NoUsableSnapshot(signal.name, aggregate_id, version, reason)
        snapshot_version = restored[1]
    result = await store.truncate_before(
        signal.name, aggregate_id, version, snapshot_version=snapshot_version
    )
    signal._pool.discard(aggregate_id)  # rebuilt from the snapshot at next use, as elsewhere
    return result


async def refuse_closed(signal: Signal[Any, Any], aggregate_id: str) -> None:
    """Raise the typed error of an archived or deleted aggregate (an empty stream otherwise)."""
    store = signal.store
    if not isinstance(store, LifecycleStore):
        return
    status = await store.stream_status(signal.name, aggregate_id)
    if status.state == "archived":
        raise AggregateArchived(signal.name, aggregate_id)
    if status.state == "deleted":
        raise AggregateDeleted(signal.name, aggregate_id)


async def past_state_truncated(
    signal: Signal[Any, Any],
    aggregate_id: str,
    stored: list[StoredEvent],
    version: int | None,
    timestamp: datetime | None,
) -> tuple[Any, int, datetime | None]:
    """``state_at`` on a truncated stream: from the snapshot the truncation kept, and only for
    the versions it and the events after it can give; any other version is refused by name."""
    first_kept = stored[0].version
    latest = stored[-1].version
    if timestamp is not None:
        before = [record for record in stored if record.timestamp <= timestamp]
        if not before:  # older than every event kept: which of the removed ones is unknown
            raise HistoryTruncated(signal.name, aggregate_id, None, first_kept)
        version = before[-1].version
    assert version is not None
    if not 0 <= version <= latest:
        raise VersionOutOfRange(signal.name, aggregate_id, version, latest)
    restored = None
    if signal._snapshotter is not None:
        restored = await signal._snapshotter.restore(aggregate_id)
    if restored is None or restored[1] > version or restored[1] < first_kept - 1:
        earliest = None if restored is None else restored[1]
        raise HistoryTruncated(signal.name, aggregate_id, version, first_kept, earliest)
    state, at = restored
    past = LiveAggregate(aggregate_id, state, at)
    tail = [record for record in stored if at < record.version <= version]
    await signal._fold(past, tail)
    when = next((r.timestamp for r in stored if r.version == past.version), None)
    return past.state, past.version, when
