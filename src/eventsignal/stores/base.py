"""The one contract every event store implements.

Stores keep encoded events (:class:`StoredEvent`), never user objects: encoding happens once, in
:mod:`eventsignal.serialization`, so every backend (and the in-memory one used in tests) sees the
same bytes, and tools such as the CLI can read a store without the user's classes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime
from typing import Protocol, Self, runtime_checkable
from uuid import UUID

import msgspec

from eventsignal.domain.errors import ConfigurationError, EventSerializationError


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event as a store keeps it: the envelope with the user's data encoded to bytes.

    Its fields are scalars and a string-to-string mapping, which cannot reach back to it, so it
    is left out of the garbage collector: a rebuild reads thousands at once, and each tracked one
    would bring the next full collection closer.

    ``tenant`` is the tenant whose stream holds the event (``""``: the default one; see
    :mod:`eventsignal.stores.tenancy`).
    ``position`` is 0 until the store assigns the event its place in the global order.
    ``defect`` is set, by the store that read it, on a row whose envelope cannot be read (say
    metadata written by hand that is not a string-to-string object): the row is handed back as
    such, with empty metadata, so one bad row never stops a reader; decoding it raises
    :class:`~eventsignal.EventSerializationError` naming its position and the defect.

    Not tracked by the garbage collector (``gc=False``): it holds only strings, numbers, bytes,
    a UUID, a timestamp and string metadata, so it can never be part of a reference cycle, and a
    store or buffer keeping many of them would otherwise make every full collection walk them.
    """

    id: UUID
    aggregate_name: str
    aggregate_id: str
    version: int
    name: str
    timestamp: datetime
    data: bytes
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)
    position: int = 0
    defect: str | None = None
    tenant: str = ""


class AggregateInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One aggregate known to a store, with the version its latest event reached (and the tenant
    whose stream it is: ``""`` for the default one)."""

    aggregate_name: str
    aggregate_id: str
    version: int
    created_at: datetime
    tenant: str = ""


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """An aggregate's encoded state as of ``version``, in the shape ``schema_version`` names."""

    aggregate_name: str
    aggregate_id: str
    version: int
    schema_version: int
    state: bytes
    taken_at: datetime


class StoreStats(msgspec.Struct, frozen=True):
    """Counters since the store was made: appends stored (commands, creations included), their
    events, and the transactions (commits, messages) that carried them. ``appends /
    transactions`` is how many commands a group commit carries on average."""

    appends: int
    events: int
    transactions: int


class StoreLifecycle:
    """The life cycle every store shares: ``open`` and ``close`` are counted (a store shared by
    several users closes with the last one), ``is_open`` says whether anyone holds it open, and
    ``async with store:`` opens and closes it."""

    _users: int = 0

    async def open(self) -> None:
        """Connect (the first call) or count one more user (the others)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Count one user less; the last one releases connections, files and threads."""
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        """Whether anyone holds the store open."""
        return self._users > 0

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@runtime_checkable
class SnapshotStore(Protocol):
    """Keeps the latest snapshot of each aggregate; an older one never replaces a newer one."""

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot``, unless a snapshot of a later version is kept already."""
        ...

    async def load_snapshot(self, aggregate_name: str, aggregate_id: str) -> Snapshot | None:
        """The latest snapshot of the aggregate, or ``None``."""
        ...


@runtime_checkable
class EventStore(Protocol):
    """Append-only storage of events, with optimistic concurrency per aggregate.

    Contract (checked by :class:`eventsignal.testing.EventStoreCompliance`):

    * ``create`` records an aggregate, with its first events if any (atomically: all or
      nothing), and returns their positions; a used id raises
      :class:`~eventsignal.AggregateExists`. ``created_at`` backdates the creation record (a copy
      from another store keeps the original moment); by default it is now.
    * ``append`` stores all events of one command atomically, or none of them. It succeeds only if
      the aggregate exists (else :class:`~eventsignal.AggregateNotFound`) and its current version
      equals ``expected_version`` (else :class:`~eventsignal.ConcurrencyError`). The events carry
      the versions ``expected_version + 1 ...`` in order. It returns the global positions assigned,
      one per event, and returns only once the events are durable.
    * ``read_aggregate`` returns one aggregate's events after a version, in version order.
    * ``read_all`` returns events of all aggregates after a global position, in position order, and
      never skips an event that becomes visible later with a lower position.
    * ``wait_for_events`` wakes followers when new events are appended.
    * ``open`` and ``close`` are counted: a store shared by several users closes when the last
      one closes it. Both are idempotent from a single user's point of view.
    """

    async def open(self) -> None:
        """Connect (the first call) or count one more user (the others)."""
        ...

    async def close(self) -> None:
        """Count one user less; the last one releases connections, files and threads."""
        ...

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
    ) -> Sequence[int]:
        """Record a new aggregate with its first ``events``, atomically; return their positions.

        A used id raises :class:`~eventsignal.AggregateExists` and stores nothing.
        ``created_at`` backdates the creation record (a copy keeps the original moment).
        """
        ...

    async def exists(self, aggregate_name: str, aggregate_id: str) -> bool:
        """Whether the aggregate was created (with or without events)."""
        ...

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]:
        """Store one command's events, all or none, once they are durable; return their
        positions.

        Only if the aggregate exists (else :class:`~eventsignal.AggregateNotFound`) and is at
        ``expected_version`` (else :class:`~eventsignal.ConcurrencyError`); the events carry the
        versions that follow it.
        """
        ...

    async def read_aggregate(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> Sequence[StoredEvent]:
        """The aggregate's events after ``after_version``, in version order."""
        ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> Sequence[StoredEvent]:
        """At most ``limit`` events of all aggregates after ``after_position``, in position
        order; an event that becomes visible later never has a lower position."""
        ...

    async def head_position(self) -> int:
        """The position of the last event stored (0 when there is none)."""
        ...

    async def aggregates(self, aggregate_name: str | None = None) -> Sequence[AggregateInfo]:
        """The aggregates (of one type, or all), with their versions and creation times."""
        ...

    async def wait_for_events(self, after_position: int) -> None:
        """Return once an event past ``after_position`` may be readable.

        Callers bound the wait with :func:`asyncio.timeout`. Spurious wake-ups are allowed, missed
        ones are not: followers always re-read. This lets subscriptions follow without polling.
        """
        ...


@runtime_checkable
class PagedReads(Protocol):
    """A store that reads a page of one aggregate's events without reading the rest.

    ``read_aggregate`` hands back every event after a version; a tool showing a long stream one
    page at a time asks for ``limit`` events after ``after_version`` instead (keyset paging on
    the version, never an offset). Stores without it are paged by reading and slicing.
    """

    async def read_aggregate_page(
        self, aggregate_name: str, aggregate_id: str, after_version: int, limit: int
    ) -> Sequence[StoredEvent]:
        """At most ``limit`` events of the aggregate after ``after_version``, in version order."""
        ...


FoldRow = tuple[int, str, bytes]
"""One stored event as a rebuild folds it: its version, stored name and encoded data."""


@runtime_checkable
class FoldReads(Protocol):
    """A store that reads one aggregate's events as a rebuild needs them, and nothing more.

    ``read_aggregate`` builds a :class:`StoredEvent` around every row, with its id, timestamp,
    position and metadata; a rebuild whose event handler reads none of those (see
    ``AggregateConfig.rebuild_envelopes``) asks for each event's version, stored name and data
    only, as plain tuples, in chunks a store may hand over as they arrive (so the caller folds
    the first while the rest is on its way). Stores that keep tenants take ``tenant=`` here as
    everywhere else. Stores without it are read through ``read_aggregate``.
    """

    def read_aggregate_data(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> AsyncGenerator[Sequence[FoldRow], None]:
        """``(version, name, data)`` of the aggregate's events after ``after_version``, in
        version order, in one or more chunks (none when there are no such events)."""
        ...


def check_versions(
    aggregate_name: str, aggregate_id: str, expected_version: int, events: Sequence[StoredEvent]
) -> None:
    """Reject a batch whose versions do not follow ``expected_version`` one by one.

    Every store calls this before touching storage: a gap or a duplicate inside a batch is a bug in
    the caller, not a conflict with another writer. Metadata is checked here too, so every store
    refuses the same metadata (see :func:`check_metadata`).
    """
    version = expected_version
    checked: object = None
    for event in events:
        version += 1
        metadata = event.metadata
        if metadata and metadata is not checked:  # a command's events share one mapping
            check_metadata(event)
            checked = metadata
        if (
            event.version != version
            or event.aggregate_id != aggregate_id
            or event.aggregate_name != aggregate_name
        ):
            raise ConfigurationError(
                f"{aggregate_name} {aggregate_id!r}: event {event.name!r} of "
                f"{event.aggregate_name} {event.aggregate_id!r} has version {event.version}, "
                f"expected version {version}"
            )


def check_metadata(event: StoredEvent) -> None:
    """Refuse metadata that some store could not keep or give back as it was given.

    Keys and values must be strings (the stores read metadata back as ``dict[str, str]``), hold
    no NUL character (PostgreSQL cannot store one in text) and be valid Unicode (no lone
    surrogates, which UTF-8 cannot carry). One rule for every store, checked before anything is
    written.
    """
    metadata = event.metadata
    if not isinstance(metadata, Mapping):
        raise _metadata_error(event, f"metadata must be a mapping, not {type(metadata).__name__}")
    for key, value in metadata.items():
        problem = _metadata_problem(key, "key") or _metadata_problem(value, "value")
        if problem is not None:
            raise _metadata_error(event, f"metadata {key!r}: {problem}")


def _metadata_error(event: StoredEvent, message: str) -> EventSerializationError:
    return EventSerializationError(
        message,
        aggregate_name=event.aggregate_name,
        aggregate_id=event.aggregate_id,
        version=event.version,
        event_name=event.name,
    )


def _metadata_problem(text: object, what: str) -> str | None:
    if type(text) is not str:
        return f"the {what} must be a string, not {type(text).__name__}"
    if "\x00" in text:
        return f"the {what} holds a NUL character"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return f"the {what} is not valid Unicode (a lone surrogate)"
    return None
