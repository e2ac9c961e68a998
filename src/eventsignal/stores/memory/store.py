"""An event store in a dictionary: for tests, examples and single-process tools.

It keeps encoded events exactly as a durable store would, so anything that cannot be encoded or
decoded fails here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice

from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    ConcurrencyError,
)
from eventsignal.domain.identity import validate_id, validate_name
from eventsignal.stores.base import (
    AggregateInfo,
    FoldRow,
    Snapshot,
    StoredEvent,
    StoreLifecycle,
    StoreStats,
    check_versions,
)
from eventsignal.stores.idempotency import (
    DEFAULT_RETENTION,
    CommandKey,
    KeyRetention,
    RecordedCommand,
    check_key,
    to_drop,
)
from eventsignal.stores.lifecycle import closed_error
from eventsignal.stores.memory.dcb import MemoryDcb
from eventsignal.stores.memory.lifecycle import MemoryLifecycle
from eventsignal.stores.memory.records import (
    ENTRY,
    Kept,
    Log,
    after,
    kept,
    pack,
    positions_in,
    read,
    stored,
    stream_of,
)
from eventsignal.stores.memory.rewriting import MemoryPayloadRewrite
from eventsignal.stores.memory.subject_keys import MemorySubjectKeys
from eventsignal.stores.memory.subscriptions import MemorySubscriptions
from eventsignal.stores.tenancy import DEFAULT_TENANT, TenantStore, tenant_store

_Key = tuple[str, str]


def _key(aggregate_name: str, aggregate_id: str, tenant: str) -> _Key:
    # Another tenant's stream rides on the id with a NUL, which no id or tenant holds: the
    # default tenant's keys stay as they were for the modules sharing these dictionaries.
    return (aggregate_name, f"{aggregate_id}\0{tenant}" if tenant else aggregate_id)


def _unkey(key: _Key) -> tuple[str, str, str]:
    """``(tenant, aggregate_name, aggregate_id)`` of a dictionary key."""
    aggregate_id, _, tenant = key[1].partition("\0")
    return tenant, key[0], aggregate_id


class MemoryStore(
    StoreLifecycle, MemorySubscriptions, MemorySubjectKeys, MemoryLifecycle, MemoryPayloadRewrite
):
    """A non-durable :class:`~eventsignal.stores.EventStore` (and snapshot store, subscription
    state, subject key store and stream lifecycle) in this object.

    Every operation on events completes without yielding to the event loop, which makes each one
    atomic with respect to other coroutines.
    """

    def __init__(self) -> None:
        self._init_subscriptions()
        self._appends = 0
        # Each aggregate's stream: the positions of its events (see records.py: the events, and
        # the streams, stay out of the garbage collector's way).
        self._streams: dict[_Key, bytearray] = {}
        self._created: dict[_Key, datetime] = {}
        self._log: Log = {}
        self._followers: list[asyncio.Future[None]] = []
        self._snapshots: dict[_Key, Snapshot] = {}
        # Idempotency keys per aggregate, oldest first (made on the first keyed command).
        self._keys: dict[_Key, dict[str, RecordedCommand]] = {}
        self._tenanted = False  # whether any stream belongs to a tenant other than the default
        self._init_lifecycle()

    async def open(self) -> None:
        self._users += 1

    def for_tenant(self, tenant: str | None) -> TenantStore:
        """This store as one tenant sees it (``None``: every tenant, read-only)."""
        return tenant_store(self, tenant)

    async def tenants(self) -> Sequence[str]:
        """The tenants holding at least one stream, sorted (``""`` is the default one)."""
        return sorted({_unkey(key)[0] for key in self._created})

    @property
    def dcb(self) -> MemoryDcb:
        """Reads and appends by query (dynamic consistency boundaries) over this store's log."""
        return MemoryDcb(self)

    async def close(self) -> None:
        self._users = max(self._users - 1, 0)

    @property
    def stats(self) -> StoreStats:
        """Counters; here every append (or creation) is its own transaction."""
        return StoreStats(self._appends, len(self._log), self._appends)

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[int]:
        key = _key(validate_name(aggregate_name), validate_id(aggregate_id), tenant)
        if key in self._created:
            raise AggregateExists(aggregate_name, aggregate_id)
        check_versions(aggregate_name, aggregate_id, 0, events)
        if tenant:
            self._tenanted = True
        self._created[key] = created_at or datetime.now(UTC)
        stream = bytearray()
        self._streams[key] = stream
        if not events:
            self._appends += 1
            return ()
        return self._keep(stream, events, tenant)

    async def exists(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> bool:
        return _key(aggregate_name, aggregate_id, tenant) in self._created

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[int]:
        if tenant:
            return self._append_of(tenant, aggregate_name, aggregate_id, expected_version, events)
        stream = self._streams.get((aggregate_name, aggregate_id))
        if stream is None:
            closed = self._closed.get((aggregate_name, aggregate_id))
            if closed is not None:
                raise closed_error(aggregate_name, aggregate_id, closed)
            raise AggregateNotFound(aggregate_name, aggregate_id)
        version = len(stream) // ENTRY
        if version != expected_version:
            # After a truncation the stream starts past version 1 (rare: looked up only then).
            trimmed = self._trimmed.get((aggregate_name, aggregate_id), 0) if self._trimmed else 0
            if version + trimmed != expected_version:
                raise ConcurrencyError(
                    aggregate_name, aggregate_id, expected_version, version + trimmed
                )
        check_versions(aggregate_name, aggregate_id, expected_version, events)
        return self._keep(stream, events)

    def _append_of(
        self,
        tenant: str,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]:
        """An append to another tenant's stream (kept apart from the default tenant's path,
        which stays as lean as before). Stream lifecycle is not offered to tenants yet, so no
        stream here is closed or truncated."""
        stream = self._streams.get(_key(aggregate_name, aggregate_id, tenant))
        if stream is None:
            raise AggregateNotFound(aggregate_name, aggregate_id)
        version = len(stream) // ENTRY
        if version != expected_version:
            raise ConcurrencyError(aggregate_name, aggregate_id, expected_version, version)
        check_versions(aggregate_name, aggregate_id, expected_version, events)
        return self._keep(stream, events, tenant)

    def _keep(
        self, stream: bytearray, events: Sequence[StoredEvent], tenant: str = ""
    ) -> Sequence[int]:
        """Give checked events their positions and add them to their stream and the log."""
        first = self._head + 1
        if len(events) == 1:  # the common case, without the general loop (nor a call to kept)
            e = events[0]
            self._log[first] = Kept(
                first,
                e.id.int,
                e.aggregate_name,
                e.aggregate_id,
                e.version,
                e.name,
                e.timestamp,
                e.data,
                e.metadata,
                tenant or e.tenant,
                e.defect,
            )
            stream += pack(first)
            positions: Sequence[int] = (first,)
        else:
            positions = range(first, first + len(events))
            entries = [kept(e, p, tenant) for e, p in zip(events, positions, strict=True)]
            self._log.update(zip(positions, entries, strict=True))
            stream += stream_of(positions)
        self._head = first + len(events) - 1
        self._appends += 1
        if self._followers:
            self._wake()
        return positions

    def _wake(self) -> None:
        for waiter in self._followers:
            if not waiter.done():
                waiter.set_result(None)
        self._followers.clear()

    async def wait_for_events(self, after_position: int) -> None:
        if self._head > after_position:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._followers.append(waiter)
        await waiter

    async def read_aggregate(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        return read(
            self._log, self._positions_after(aggregate_name, aggregate_id, after_version, tenant)
        )

    def _positions_after(
        self, aggregate_name: str, aggregate_id: str, after_version: int, tenant: str
    ) -> list[int]:
        """The positions of the aggregate's events after ``after_version`` (none if no stream)."""
        key = _key(aggregate_name, aggregate_id, tenant)
        stream = self._streams.get(key)
        if not stream:
            return []
        trimmed = self._trimmed.get(key, 0) if self._trimmed else 0
        return positions_in(stream, max(after_version - trimmed, 0))

    async def read_aggregate_data(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> AsyncGenerator[Sequence[FoldRow], None]:
        """``(version, name, data)`` of the aggregate's events after ``after_version``, in one
        chunk."""
        log = self._log
        positions = self._positions_after(aggregate_name, aggregate_id, after_version, tenant)
        rows = [(e.version, e.name, e.data) for e in map(log.__getitem__, positions)]
        if rows:
            yield rows

    async def read_aggregate_page(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int,
        limit: int,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        key = _key(aggregate_name, aggregate_id, tenant)
        stream = self._streams.get(key)
        if not stream:
            return []
        trimmed = self._trimmed.get(key, 0) if self._trimmed else 0
        start = max(after_version - trimmed, 0)
        return read(self._log, positions_in(stream, start, start + max(limit, 0)))

    async def read_all(
        self, after_position: int = 0, limit: int = 1000, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[StoredEvent]:
        events = self._after(after_position)
        if tenant is None or not self._tenanted:  # the whole log, or one tenant's: all of it
            if tenant:
                return []
            return [stored(event) for event in islice(events, max(limit, 0))]
        found: list[StoredEvent] = []
        for event in events:
            if event.tenant == tenant:
                found.append(stored(event))
                if len(found) >= limit:
                    break
        return found

    def _after(self, position: int) -> Iterator[Kept]:
        """The events of the log after ``position``, in order."""
        return after(self._log, position, self._head)

    async def head_position(self, *, tenant: str | None = DEFAULT_TENANT) -> int:
        log = self._log
        if tenant is None or not self._tenanted:
            return next(reversed(log)) if log and not tenant else 0
        return next((e.position for e in reversed(log.values()) if e.tenant == tenant), 0)

    async def aggregates(
        self, aggregate_name: str | None = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[AggregateInfo]:
        found = []
        for key, created in self._created.items():
            owner, name, aggregate_id = _unkey(key)
            if (tenant is not None and owner != tenant) or key in self._closed:
                continue
            if aggregate_name is None or name == aggregate_name:
                version = len(self._streams[key]) // ENTRY + self._trimmed.get(key, 0)
                info = AggregateInfo(
                    aggregate_name=name,
                    aggregate_id=aggregate_id,
                    version=version,
                    created_at=created,
                    tenant=owner,
                )
                found.append(info)
        return found

    # Idempotent commands (see eventsignal.stores.idempotency)

    async def append_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        recorded = self._check_free(aggregate_name, aggregate_id, key)
        positions = await self.append(aggregate_name, aggregate_id, expected_version, events)
        self._record(recorded, key, expected_version + len(events), retention)
        return positions

    async def create_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        recorded = self._check_free(aggregate_name, aggregate_id, key)
        positions = await self.create(aggregate_name, aggregate_id, events)
        self._record(recorded, key, len(events), retention)
        return positions

    async def find_command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        key: str,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> RecordedCommand | None:
        # Retention is applied when keys are recorded: what is found here is kept.
        return self._keys.get((aggregate_name, aggregate_id), {}).get(key)

    def _check_free(
        self, aggregate_name: str, aggregate_id: str, key: CommandKey
    ) -> dict[str, RecordedCommand]:
        check_key(aggregate_name, aggregate_id, key.key)
        recorded = self._keys.setdefault((aggregate_name, aggregate_id), {})
        if key.key in recorded:
            raise CommandKeyTaken(aggregate_name, aggregate_id, key.key)
        return recorded

    @staticmethod
    def _record(
        recorded: dict[str, RecordedCommand],
        key: CommandKey,
        version: int,
        retention: KeyRetention,
    ) -> None:
        recorded[key.key] = RecordedCommand(
            key=key.key, digest=key.digest, version=version, recorded_at=key.recorded_at
        )
        oldest_first = list(recorded.values())
        for dropped in oldest_first[: to_drop(oldest_first, retention, key.recorded_at)]:
            del recorded[dropped.key]

    async def save_snapshot(self, snapshot: Snapshot, *, tenant: str = DEFAULT_TENANT) -> None:
        key = _key(snapshot.aggregate_name, snapshot.aggregate_id, tenant)
        current = self._snapshots.get(key)
        if current is None or current.version < snapshot.version:
            self._snapshots[key] = snapshot

    async def load_snapshot(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> Snapshot | None:
        return self._snapshots.get(_key(aggregate_name, aggregate_id, tenant))
