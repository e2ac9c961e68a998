"""The life of a stream after its last command: archive, restore, delete, truncate.

An append-only log still has to let go of data: streams nobody uses any more (archive them to
cold storage, in the same database, and restore them if they are needed again), streams that
must be erased (delete them: a deletion record stays in the log, the id is never used again),
and long streams whose early history a snapshot already sums up (truncate them).

What every store that supports it shares is here: the contract (:class:`LifecycleStore`), what
it reports (:class:`StreamStatus`, :class:`LifecycleResult`), the deletion record every
subscription receives (:class:`StreamDeleted`) and the markers SQL stores keep in the version
column of an archived or deleted aggregate, so that the append path refuses it without reading
anything more than it does today.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

import msgspec

from eventsignal.domain.errors import (
    AggregateArchived,
    AggregateDeleted,
    LifecycleNotSupported,
    NoUsableSnapshot,
    StreamClosed,
    VersionOutOfRange,
)
from eventsignal.domain.events import new_event_id
from eventsignal.stores.base import StoredEvent

#: The stored name of the deletion record.
DELETION_EVENT = "eventsignal.StreamDeleted"

#: The version a SQL store writes in place of an archived or deleted aggregate's version: an
#: append expecting any real version finds it instead, and is refused as closed.
ARCHIVED_VERSION = -1000
DELETED_VERSION = -1001

StreamState = Literal["live", "archived", "deleted"]
Operation = Literal["archive", "restore", "delete", "truncate"]

#: Where a store keeps archived events (the tombstone says so).
ARCHIVE_TABLE = "eventsignal_archive"


class StreamDeleted(msgspec.Struct, frozen=True, kw_only=True):
    """The deletion record: appended to the log when an aggregate is deleted.

    Every subscription that reads the aggregate type receives it (its envelope carries the
    aggregate id, at version 0, since it is no event of the aggregate), so read models can drop
    what they hold about the aggregate. It holds no data of the deleted events.
    """

    aggregate_name: str
    aggregate_id: str
    version: int  # the version the aggregate had reached
    events: int  # how many events were deleted
    deleted_at: datetime


class StreamStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where an aggregate's stream stands: live, archived or deleted.

    ``version`` is the last version it reached; ``first_version`` the first version still
    stored (above 1 after a truncation); ``events`` how many of its events are in the log and
    ``archived`` how many in cold storage; ``location`` where archived events are kept.
    """

    aggregate_name: str
    aggregate_id: str
    state: StreamState
    version: int
    first_version: int
    events: int
    archived: int
    location: str | None = None
    changed_at: datetime | None = None


class LifecycleResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one lifecycle operation did: how many events it moved or removed, and for a
    deletion the position of the deletion record."""

    operation: Operation
    aggregate_name: str
    aggregate_id: str
    events: int
    position: int = 0


@runtime_checkable
class LifecycleStore(Protocol):
    """A store whose streams can be archived, restored, deleted and truncated.

    Contract (checked by :class:`eventsignal.testing.LifecycleCompliance`):

    * ``archive`` moves the aggregate's events out of the log into cold storage and leaves a
      tombstone; ``read_all`` and ``read_aggregate`` no longer return them; ``append`` refuses
      with :class:`~eventsignal.domain.errors.AggregateArchived`.
    * ``restore`` puts them back at their original positions and versions.
    * ``delete`` removes the events (from the log or cold storage) and the snapshot, appends a
      :class:`StreamDeleted` record at a new position, and refuses every later ``append``
      (:class:`~eventsignal.domain.errors.AggregateDeleted`) and ``create``
      (:class:`~eventsignal.AggregateExists`).
    * ``truncate_before`` removes the events before a version once a snapshot at or after the
      version before it is kept (else :class:`~eventsignal.domain.errors.NoUsableSnapshot`).
    * Positions are never reused: new events always get positions above any ever given.
    """

    async def stream_status(self, aggregate_name: str, aggregate_id: str) -> StreamStatus:
        """The stream's state; :class:`~eventsignal.AggregateNotFound` if never created."""
        ...

    async def any_changed(self) -> bool:
        """Whether any stream is archived, deleted or truncated now (tools that copy or
        compare whole stores need to know)."""
        ...

    async def archive(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult: ...

    async def restore(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult: ...

    async def delete(self, aggregate_name: str, aggregate_id: str) -> LifecycleResult: ...

    async def truncate_before(
        self,
        aggregate_name: str,
        aggregate_id: str,
        version: int,
        *,
        snapshot_version: int | None = None,
    ) -> LifecycleResult:
        """Remove the events before ``version``. ``snapshot_version`` is the version of a
        snapshot the caller keeps elsewhere and checked; without it the store looks for one in
        its own snapshots."""
        ...


def lifecycle_of(store: object, operation: str) -> LifecycleStore:
    """``store`` as a :class:`LifecycleStore`, or an error naming it and ``operation``."""
    if isinstance(store, LifecycleStore):
        return store
    tenant = getattr(store, "tenant", None)
    if tenant is not None:  # a tenant's view of a store (eventsignal.stores.tenancy)
        reason = f"stream lifecycle is not offered within a tenant ({tenant!r}) yet"
        raise LifecycleNotSupported(type(store).__name__, operation, reason)
    raise LifecycleNotSupported(type(store).__name__, operation)


def closed_error(aggregate_name: str, aggregate_id: str, marker: int) -> StreamClosed:
    """The error for an append that found ``marker`` in place of a version."""
    if marker == DELETED_VERSION:
        return AggregateDeleted(aggregate_name, aggregate_id)
    return AggregateArchived(aggregate_name, aggregate_id)


def check_truncation(
    aggregate_name: str,
    aggregate_id: str,
    version: int,
    current: int,
    snapshot_version: int | None,
) -> None:
    """Refuse a truncation no snapshot covers, or one that would leave no event: the last
    event stays, so that a stream never looks like one just created."""
    if not 1 <= version <= current:
        raise VersionOutOfRange(aggregate_name, aggregate_id, version, current)
    if version > 1:
        check_snapshot(aggregate_name, aggregate_id, version, current, snapshot_version)


def check_snapshot(
    aggregate_name: str, aggregate_id: str, version: int, current: int, snapshot: int | None
) -> None:
    """Refuse when the snapshot kept cannot stand for the events before ``version``."""
    if snapshot is None:
        raise NoUsableSnapshot(aggregate_name, aggregate_id, version, "it has no snapshot")
    if not version - 1 <= snapshot <= current:
        raise NoUsableSnapshot(
            aggregate_name,
            aggregate_id,
            version,
            f"its snapshot is at version {snapshot}",
        )


def is_closed_marker(version: int) -> bool:
    """Whether a version read from a SQL store is an archived or deleted marker."""
    return version in (ARCHIVED_VERSION, DELETED_VERSION)


_encode = msgspec.json.Encoder().encode


def deletion_record(
    aggregate_name: str, aggregate_id: str, version: int, events: int
) -> StoredEvent:
    """The record a deletion appends (position 0 until the store gives it one)."""
    now = datetime.now(UTC)
    payload = StreamDeleted(
        aggregate_name=aggregate_name,
        aggregate_id=aggregate_id,
        version=version,
        events=events,
        deleted_at=now,
    )
    return StoredEvent(
        id=new_event_id(),
        aggregate_name=aggregate_name,
        aggregate_id=aggregate_id,
        version=0,
        name=DELETION_EVENT,
        timestamp=now,
        data=_encode(payload),
    )


decode_deletion = msgspec.json.Decoder(StreamDeleted).decode
