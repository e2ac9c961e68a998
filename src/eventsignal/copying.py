"""Moving a whole store to another backend: ``copy_store``, then ``verify_copy``.

Everything goes through the store contracts, so any store can be copied into any other: the
events in their global order with their ids, versions, timestamps and metadata; each aggregate's
creation record with its original moment; the latest snapshot of each aggregate; and the
subscription state (checkpoints, parked and quarantined events, read-model documents) with its
positions translated to the target's, since no two stores number events alike.

The source must be at rest while it is copied (no commands, no subscription runners): the copy
is a picture of one moment. Each write is atomic, so an interrupted copy leaves the target
holding a prefix of the source, and copying again continues after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from eventsignal.domain.errors import ConfigurationError, SignalError, StoreInconsistent
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores.base import AggregateInfo, EventStore, StoredEvent
from eventsignal.stores.lifecycle import LifecycleStore
from eventsignal.stores.subscription_state import (
    Lease,
    ParkedEvent,
    StoredDocument,
    SubscriptionState,
    SubscriptionStore,
)
from eventsignal.stores.tenancy import TenantAware, TenantStore, tenant_store

Progress = Callable[[int, int], None]
"""Called as ``progress(events_on_target, events_in_source)`` after each write."""

_Key = tuple[str, str, str]  # tenant, aggregate type, aggregate id
_COPIER = "eventsignal-copy"  # the member that sets checkpoints; it holds no lease afterwards
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class CopyRefused(SignalError):
    """The target holds something that is not the start of the source: copying would mix two
    histories, so nothing is written."""


class CopyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a copy did. ``events`` counts the source's events, ``copied`` those this run wrote
    and ``resumed_after`` those the target already held. ``state`` says what became of the
    subscription state: ``"copied"``, ``"already on the target"`` or ``"not kept by both"``."""

    events: int
    copied: int
    resumed_after: int
    aggregates: int
    snapshots: int
    subscriptions: int
    parked: int
    quarantined: int
    documents: int
    state: str
    seconds: float


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """One store's totals, and a digest over all its events in global order."""

    aggregates: int
    events: int
    digest: str


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """One aggregate (or the global order) that differs: what each store holds."""

    subject: str
    source: str
    target: str


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """Both stores summed up, and every difference found between them."""

    source: Summary
    target: Summary
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


async def copy_store(
    source: EventStore,
    target: EventStore,
    *,
    progress: Progress | None = None,
    batch: int = 1000,
    pipeline: bool = True,
    personal: bool = True,
) -> CopyReport:
    """Copy everything ``source`` holds into ``target`` (both open); continue an interrupted copy.

    Refuses, with :class:`CopyRefused`, a target that holds anything but a prefix of the source.
    ``batch`` events are read at a time; with ``pipeline`` the writes for distinct aggregates
    among them are issued together (the target must store them in the order issued, which is
    checked); without it, one at a time. With ``personal`` the keys of the data subjects
    the events name go along (see :mod:`eventsignal.privacy`), at the cost of one more read of
    the source's log.
    """
    started = time.monotonic()
    if isinstance(source, LifecycleStore) and await source.any_changed():
        raise CopyRefused(
            "the source holds archived, deleted or truncated streams: copying them is not "
            "supported yet"
        )
    # Every tenant's streams go along, each into its own tenant of the target.
    source_log, target_log = _whole(source), _whole(target)
    sources = {_key(a): a for a in await source_log.aggregates()}
    if not isinstance(target, TenantAware) and any(key[0] for key in sources):
        raise CopyRefused(
            f"the source holds tenants' streams, which {type(target).__name__} cannot keep"
        )
    held_aggregates = {_key(a): a for a in await target_log.aggregates()}
    total = sum(a.version for a in sources.values())
    held = _check_prefix(sources, held_aggregates)

    state: _State | None = None
    state_outcome = "not kept by both"
    if (
        isinstance(source, SubscriptionStore)
        and isinstance(target, SubscriptionStore)
        and await _keeps_state(source)
        and await _keeps_state(target)
    ):
        async with target.subscription_reads() as reads:
            target_has_state = not (await _State.read(reads)).empty
        if target_has_state and held == 0:
            raise CopyRefused("the target holds subscription state but no events: not a copy")
        if target_has_state:
            state_outcome = "already on the target"
        else:
            # Read first: the positions it names are translated while the events go by.
            async with source.subscription_reads() as reads:
                state = await _State.read(reads)
    positions = _Positions(state.positions() if state is not None else ())

    def report(done: int) -> None:
        if progress is not None:
            progress(done, total)

    copier = _Copier(source_log, target, sources, held_aggregates, positions, batch, pipeline)
    await copier.match_prefix(held)
    report(held)
    await copier.copy_rest(report)
    for key, info in sources.items():
        if info.version == 0 and key not in copier.versions:
            await _within(target, key[0]).create(key[1], key[2], created_at=info.created_at)
    positions.finish()

    snapshots = await _copy_snapshots(source, target, sources)
    if personal:
        from eventsignal.privacy.copying import copy_subject_keys

        await copy_subject_keys(source, target, batch=batch)
    if state is not None:
        await state.write(target, positions)
        state_outcome = "copied"
    return CopyReport(
        events=copier.done,
        copied=copier.done - held,
        resumed_after=held,
        aggregates=len(sources),
        snapshots=snapshots,
        subscriptions=len(state.checkpoints) if state is not None else 0,
        parked=len(state.parked) if state is not None else 0,
        quarantined=len(state.quarantined) if state is not None else 0,
        documents=sum(map(len, state.documents.values())) if state is not None else 0,
        state=state_outcome,
        seconds=time.monotonic() - started,
    )


def _check_prefix(sources: Mapping[_Key, AggregateInfo], held: Mapping[_Key, AggregateInfo]) -> int:
    """How many events the target holds, once every aggregate in it is one of the source's."""
    for key, info in held.items():
        original = sources.get(key)
        if original is None:
            raise CopyRefused(f"the target holds {_name(key)}, which the source does not")
        if info.version > original.version or info.created_at != original.created_at:
            raise CopyRefused(
                f"the target's {_name(key)} (version {info.version}, created "
                f"{info.created_at.isoformat()}) is not the source's (version "
                f"{original.version}, created {original.created_at.isoformat()})"
            )
    return sum(info.version for info in held.values())


class _Copier:
    """Walks the source's log and writes it to the target, one aggregate's run at a time."""

    def __init__(
        self,
        source: EventStore,
        target: EventStore,
        sources: Mapping[_Key, AggregateInfo],
        held: Mapping[_Key, AggregateInfo],
        positions: _Positions,
        batch: int,
        pipeline: bool,
    ) -> None:
        self.source = source
        self.target = target
        self.sources = sources
        self.positions = positions
        self.batch = max(batch, 1)
        self.versions = {key: info.version for key, info in held.items()}
        self.after = 0  # the source position read up to
        self.done = 0  # events on the target
        self.last_position = 0  # the target's, after the events matched or copied
        self.pipeline = pipeline
        self.target_log = _whole(target)

    async def match_prefix(self, held: int) -> None:
        """Read the events the target holds beside the source's, refusing any that differ."""
        target_after = 0
        while self.done < held:
            originals = await self.source.read_all(self.after, min(self.batch, held - self.done))
            copies = await self.target_log.read_all(target_after, len(originals))
            if not originals:
                break
            for original, copy in zip(originals, copies, strict=False):
                self.done += 1
                if copy.id != original.id:
                    raise CopyRefused(
                        f"the target's event #{self.done} is {_describe(copy)}, but the "
                        f"source's is {_describe(original)}"
                    )
                self.positions.passed(original.position, copy.position)
            if len(copies) < len(originals):
                raise StoreInconsistent(
                    f"the target lists {held} events in its aggregates but its log ends "
                    f"after {self.done}"
                )
            self.after = originals[-1].position
            target_after = self.last_position = copies[-1].position
        extra = await self.target_log.read_all(target_after, 1)
        if self.done < held or extra:
            unmatched = _describe(extra[0]) if extra else f"{held - self.done} more events"
            raise CopyRefused(f"the target holds {unmatched} beyond the source's events")

    async def copy_rest(self, report: Callable[[int], None]) -> None:
        """Copy every event past the prefix, a read batch at a time.

        Consecutive events of one aggregate go in one write. Writes for distinct aggregates go
        out together, so a store that commits in groups (the SQL stores) needs one commit for
        many of them instead of one each.
        """
        while events := await self.source.read_all(self.after, self.batch):
            for wave in _waves(_runs(events)):
                await self._write_wave(wave)
                report(self.done)
            self.after = events[-1].position

    async def _write_wave(self, wave: list[list[StoredEvent]]) -> None:
        if self.pipeline and len(wave) > 1:
            outcomes = await asyncio.gather(*map(self._store, wave), return_exceptions=True)
        else:
            outcomes = [await self._store(run) for run in wave]
        last = self.last_position
        for run, outcome in zip(wave, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome[0] <= last:
                raise StoreInconsistent(
                    "the target stored writes issued together out of their order: copy into "
                    "an empty store again, one write at a time (pipeline=False)"
                )
            last = outcome[-1]
            for event, position in zip(run, outcome, strict=True):
                self.positions.passed(event.position, position)
            self.versions[_key(run[0])] = run[-1].version
            self.done += len(run)
        self.last_position = last

    async def _store(self, run: list[StoredEvent]) -> Sequence[int]:
        key = _key(run[0])
        target = _within(self.target, key[0])
        version = self.versions.get(key)
        if version is not None:
            return await target.append(key[1], key[2], version, run)
        info = self.sources.get(key)
        created_at = info.created_at if info is not None else None
        return await target.create(key[1], key[2], run, created_at=created_at)


def _runs(events: Sequence[StoredEvent]) -> list[list[StoredEvent]]:
    """Consecutive events of one aggregate, together; an unreadable event stops the copy."""
    runs: list[list[StoredEvent]] = []
    for event in events:
        if event.defect is not None:
            raise StoreInconsistent(
                f"the source's event at position {event.position} cannot be read "
                f"({event.defect}): mend or quarantine it before copying"
            )
        if not event.aggregate_name:
            raise ConfigurationError(
                f"the source's event at position {event.position} ({event.name!r}) was appended "
                "by query (DCB) and belongs to no aggregate: copying such events is not "
                "supported yet"
            )
        if runs and _key(runs[-1][0]) == _key(event):
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs


def _waves(runs: list[list[StoredEvent]]) -> list[list[list[StoredEvent]]]:
    """Runs in order, cut so that no aggregate appears twice in a wave: a write may then go out
    with the others of its wave without waiting for one of its own aggregate."""
    waves: list[list[list[StoredEvent]]] = [[]]
    keys: set[_Key] = set()
    for run in runs:
        key = _key(run[0])
        if key in keys:
            waves.append([])
            keys.clear()
        waves[-1].append(run)
        keys.add(key)
    return [wave for wave in waves if wave]


class _Positions:
    """Translates the source positions the subscription state names into target positions.

    A source position ``p`` becomes the target position of the last event copied whose source
    position is at most ``p``: what a checkpoint had passed, it has passed on the target too.
    Only the wanted positions are kept, so memory follows the state, not the log.
    """

    def __init__(self, wanted: Iterable[int]) -> None:
        self._wanted = sorted(set(wanted))
        self._next = 0
        self._last = 0
        self._found: dict[int, int] = {}

    def passed(self, source_position: int, target_position: int) -> None:
        wanted = self._wanted
        while self._next < len(wanted) and wanted[self._next] < source_position:
            self._found[wanted[self._next]] = self._last
            self._next += 1
        self._last = target_position

    def finish(self) -> None:
        for position in self._wanted[self._next :]:
            self._found[position] = self._last
        self._next = len(self._wanted)

    def __getitem__(self, source_position: int) -> int:
        return self._found[source_position]


async def _keeps_state(store: SubscriptionStore) -> bool:
    """Whether ``store`` can keep subscription state: NATS can on a server with atomic batches
    (2.12 or later) only, and refuses it otherwise; then its events are copied alone."""
    try:
        await store.setup_subscriptions()
    except ConfigurationError:
        return False
    return True


class _State(msgspec.Struct, kw_only=True):
    """A store's subscription state, as far as it outlives the processes that wrote it."""

    checkpoints: dict[str, list[Lease]]
    parked: list[ParkedEvent]
    quarantined: dict[int, str]
    documents: dict[str, list[StoredDocument]]

    @classmethod
    async def read(cls, reads: SubscriptionState) -> _State:
        names = [row.name for row in await reads.overview(time.time())]
        return cls(
            checkpoints={name: await reads.leases(name) for name in names},
            parked=await reads.parked(),
            quarantined=await reads.quarantined(),
            documents={m: await reads.documents(m) for m in await reads.document_models()},
        )

    @property
    def empty(self) -> bool:
        return not (self.checkpoints or self.parked or self.quarantined or self.documents)

    def positions(self) -> list[int]:
        found = [lease.position for leases in self.checkpoints.values() for lease in leases]
        found += [parked.position for parked in self.parked]
        found += self.quarantined
        found += [doc.position for docs in self.documents.values() for doc in docs]
        return found

    async def write(self, target: EventStore, positions: _Positions) -> None:
        """Write the state translated to the target's positions, in one transaction."""
        assert isinstance(target, SubscriptionStore)
        parked = [(p, await _event_at(target, positions[p.position], p)) for p in self.parked]
        now = time.time()
        async with target.subscription_transaction() as tx:
            for name, leases in self.checkpoints.items():
                await tx.ensure(name, len(leases), 0)
                for lease in leases:
                    # Leases are not copied: their owners are processes of the old store.
                    if position := positions[lease.position]:
                        await _set_checkpoint(tx, name, lease.part, position, now)
            for entry, event in parked:
                parked_at = entry.parked_at.timestamp()
                await tx.park(entry.subscription, event, entry.error, entry.attempts, parked_at)
            for position, reason in self.quarantined.items():
                await tx.quarantine(positions[position], reason, now)
            await tx.put_documents(
                (model, StoredDocument(doc.key, doc.data, positions[doc.position]))
                for model, docs in self.documents.items()
                for doc in docs
            )


async def _set_checkpoint(
    tx: SubscriptionState, name: str, part: int, position: int, now: float
) -> None:
    # Through the lease protocol, as a runner would move it: claim, advance, hand back.
    start = await tx.claim(name, part, _COPIER, now, now + 60)
    if start is None or not await tx.advance(name, part, _COPIER, start, position, now):
        raise StoreInconsistent(f"cannot set the checkpoint of {name!r} partition {part}")
    await tx.release(name, _COPIER)


async def _event_at(store: EventStore, position: int, parked: ParkedEvent) -> StoredEvent:
    """The target's copy of a parked event, which parking records with its new position."""
    found = await _whole(store).read_all(position - 1, 1)
    if not found or found[0].id != parked.event_id:
        raise StoreInconsistent(
            f"subscription {parked.subscription!r} parked event {parked.event_id}, which is not "
            f"among the events copied"
        )
    return found[0]


async def _copy_snapshots(
    source: EventStore, target: EventStore, aggregates: Iterable[_Key]
) -> int:
    """Copy each aggregate's latest snapshot, when both stores keep snapshots."""
    if snapshot_store_for(source) is None or snapshot_store_for(target) is None:
        return 0
    copied = 0
    for tenant, name, aggregate_id in aggregates:
        loads = snapshot_store_for(_within(source, tenant))
        saves = snapshot_store_for(_within(target, tenant))
        assert loads is not None
        assert saves is not None
        snapshot = await loads.load_snapshot(name, aggregate_id)
        if snapshot is not None:
            await saves.save_snapshot(snapshot)
            copied += 1
    return copied


# Verification


async def verify_copy(source: EventStore, target: EventStore, *, batch: int = 1000) -> Verification:
    """Compare both stores aggregate by aggregate: creation record, event count and a digest of
    the events (id, version, name, timestamp, data, metadata), and the global order."""
    original = await _Fingerprint.of(source, batch)
    copy = await _Fingerprint.of(target, batch)
    mismatches: list[Mismatch] = []
    for key in sorted(original.aggregates.keys() | copy.aggregates.keys()):
        theirs, ours = original.describe(key), copy.describe(key)
        if theirs != ours:
            mismatches.append(Mismatch(subject=_name(key), source=theirs, target=ours))
    if not mismatches and original.order.hexdigest() != copy.order.hexdigest():
        mismatches.append(
            Mismatch(
                subject="the global order",
                source=f"sha256 {original.order.hexdigest()[:16]}",
                target=f"sha256 {copy.order.hexdigest()[:16]}",
            )
        )
    return Verification(
        source=original.summary(), target=copy.summary(), mismatches=tuple(mismatches)
    )


class _Fingerprint:
    """Per aggregate: creation record, events counted and hashed in version order."""

    def __init__(self) -> None:
        self.aggregates: dict[_Key, AggregateInfo] = {}
        self.counts: dict[_Key, int] = {}
        self.digests: dict[_Key, hashlib._Hash] = {}
        self.order = hashlib.sha256()  # every event, in global order
        self.events = 0

    @classmethod
    async def of(cls, store: EventStore, batch: int) -> _Fingerprint:
        found = cls()
        store = _whole(store)
        found.aggregates = {_key(a): a for a in await store.aggregates()}
        after = 0
        while events := await store.read_all(after, batch):
            for event in events:
                key = _key(event)
                digest = found.digests.get(key)
                if digest is None:
                    digest = found.digests[key] = hashlib.sha256()
                canonical = _canonical(event)
                digest.update(canonical)
                found.counts[key] = found.counts.get(key, 0) + 1
                found.order.update(canonical)
            found.events += len(events)
            after = events[-1].position
        return found

    def describe(self, key: _Key) -> str:
        info = self.aggregates.get(key)
        if info is None:
            return "absent"
        digest = self.digests.get(key)
        hexdigest = digest.hexdigest()[:16] if digest is not None else "-"
        return (
            f"version {info.version}, {self.counts.get(key, 0)} events, sha256 {hexdigest}, "
            f"created {info.created_at.astimezone(UTC).isoformat()}"
        )

    def summary(self) -> Summary:
        return Summary(
            aggregates=len(self.aggregates), events=self.events, digest=self.order.hexdigest()
        )


def _canonical(event: StoredEvent) -> bytes:
    # Timestamps as microseconds since the epoch: stores return them in different time zones.
    when = (event.timestamp - _EPOCH) // _MICROSECOND
    metadata = sorted(event.metadata.items())
    return msgspec.msgpack.encode(
        (
            event.id.bytes,
            event.version,
            event.name,
            when,
            event.data,
            metadata,
            event.defect,
            event.tenant,
        )
    )


def _key(item: StoredEvent | AggregateInfo) -> _Key:
    return (item.tenant, item.aggregate_name, item.aggregate_id)


def _name(key: _Key) -> str:
    where = f" of tenant {key[0]!r}" if key[0] else ""
    return f"{key[1]} {key[2]!r}{where}"


def _whole(store: EventStore) -> EventStore:
    """The store's log of every tenant (the store itself when it keeps no tenants)."""
    if isinstance(store, TenantAware) and not isinstance(store, TenantStore):
        return tenant_store(store, None)
    return store


def _within(store: EventStore, tenant: str) -> EventStore:
    """The store as ``tenant`` sees it (the store itself for the default tenant)."""
    return tenant_store(store, tenant) if tenant else store


def _describe(event: StoredEvent) -> str:
    return f"{event.id} ({event.aggregate_name} {event.aggregate_id!r} version {event.version})"


__all__ = [
    "CopyRefused",
    "CopyReport",
    "Mismatch",
    "Progress",
    "Summary",
    "Verification",
    "copy_store",
    "verify_copy",
]
