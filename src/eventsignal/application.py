"""The application layer: :class:`Signal` runs commands against live aggregates.

A command runs under its aggregate's lock, against the current state. Its events are applied to
the state first (so a failing event handler stores nothing), then appended to the store with the
version the state was built from. Only when the store confirms does the live state move on and
the caller get an answer. If another writer got there first, the aggregate catches up on the
stored events and the command runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import msgspec

from eventsignal import streams
from eventsignal.bus import EventBus, Subscriber
from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    HistoryTruncated,
    IdempotencyKeyReused,
    NotStarted,
    StoreInconsistent,
    StreamClosed,
    VersionOutOfRange,
)
from eventsignal.domain.events import Event
from eventsignal.domain.identity import validate_id
from eventsignal.folding import FOLD_SLICE, lean_fold
from eventsignal.idempotency import CommandResult, command_digest
from eventsignal.instrumentation import Append, Create, Instrumentation
from eventsignal.pool import LiveAggregate, Pool, PoolStats
from eventsignal.privacy import Forgetting, Privacy, personal_data
from eventsignal.recording import Recorder
from eventsignal.serialization import EventSerializer, Transcoder, envelope
from eventsignal.snapshotting import Snapshotter, snapshot_store_for
from eventsignal.stores.base import EventStore, SnapshotStore, StoredEvent
from eventsignal.stores.idempotency import (
    DEFAULT_RETENTION,
    CommandKey,
    IdempotentStore,
    KeyRetention,
    RecordedCommand,
    check_key,
)
from eventsignal.stores.lifecycle import LifecycleResult, StreamStatus
from eventsignal.stores.memory import MemoryStore
from eventsignal.stores.sql.contract import SharedTransactions, SQLTransaction
from eventsignal.stores.subscription_state import SubscriptionStore, wait_until_processed
from eventsignal.stores.tenancy import DEFAULT_TENANT
from eventsignal.telemetry import (
    AggregateCreated,
    AggregateEvicted,
    AggregateHydrated,
    AggregateMissing,
    CannotCreateAggregate,
    CommandConflicted,
    CommandFailed,
    CommandProcessed,
    CreatingAggregate,
    EventsProduced,
    HydratingAggregate,
    ProcessingCommand,
    TelemetryHook,
    TriggeringSubscribers,
    log_telemetry,
    logger,
)
from eventsignal.tenants import TenantViews

S = TypeVar("S")
C = TypeVar("C")

EvictionHook = Callable[[str, Any, int], object]
OwnWrites = Callable[[SQLTransaction, Sequence[Event[Any]]], Awaitable[object]]
"""The application's own writes for one command: called with the SQL transaction that will also
store the command's events, and those events, before they are stored."""
Hooks = tuple[TelemetryHook | None, TelemetryHook | None]  # for info reports, for debug reports
_QUIET: Hooks = (None, None)
# What Signal._hooks asks first, inlined on the command path: whether the default hook logs
# at all (a report at INFO or DEBUG is dropped otherwise, and not built).
_logs = logger.isEnabledFor
_INFO = logging.INFO
_replace = msgspec.structs.replace


def _own(metadata: Mapping[str, str] | None) -> Mapping[str, str]:
    """The caller's metadata as a dict of our own, so changing theirs later changes no event."""
    if metadata is None:
        return {}
    try:
        return dict(metadata)
    except (TypeError, ValueError):
        return metadata  # the store's check names what is wrong with it


class Aggregate(Generic[S]):
    """A handle on one aggregate.

    The handle stays valid after the aggregate is evicted from the pool: the pool revives the
    same live copy when the aggregate is used again, so the handle always shows the current state
    in its :class:`Signal`, and a command sent through it brings the aggregate back.

    ``repeated`` is true on the handle :meth:`Signal.create` returns for a repeated
    idempotency key: the aggregate was created before, by the same command, and nothing ran.
    """

    __slots__ = ("_live", "_repeated", "_signal")

    def __init__(
        self, signal: Signal[S, Any], live: LiveAggregate[S], *, repeated: bool = False
    ) -> None:
        self._signal = signal
        self._live = live
        self._repeated = repeated

    @property
    def repeated(self) -> bool:
        """Whether :meth:`Signal.create` found this aggregate created before under the same
        idempotency key (and so ran nothing)."""
        return self._repeated

    @property
    def id(self) -> str:
        """The aggregate's id."""
        return self._live.id

    @property
    def state(self) -> S:
        """The current state, as of the last command this process stored."""
        return self._live.state

    @property
    def version(self) -> int:
        """How many events the current state is built from."""
        return self._live.version

    async def handle_command(
        self,
        command: object,
        *,
        metadata: Mapping[str, str] | None = None,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 5.0,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> S:
        """Run a command; return the new state once its events are stored.

        The options are those of :meth:`Signal.handle_command`.
        """
        signal = self._signal
        live = signal._pool.get(self._live.id)
        if live is None:
            signal._check_started()
            live = await signal._load(self._live.id)
        self._live = live
        if idempotency_key is None and own_writes is None:
            return await signal._execute(live, command, metadata, wait_for, wait_timeout)
        result = await signal._execute_special(
            live, command, metadata, wait_for, wait_timeout, idempotency_key, own_writes
        )
        return result.state

    async def run_command(
        self,
        command: object,
        *,
        metadata: Mapping[str, str] | None = None,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 5.0,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> CommandResult[S]:
        """As :meth:`handle_command`, answering with a :class:`~eventsignal.CommandResult`
        that says whether the idempotency key was a repeat."""
        live = await self._current()
        return await self._signal._execute_special(
            live, command, metadata, wait_for, wait_timeout, idempotency_key, own_writes
        )

    async def _current(self) -> LiveAggregate[S]:
        signal = self._signal
        live = signal._pool.get(self._live.id)
        if live is None:
            signal._check_started()
            live = await signal._load(self._live.id)
        self._live = live
        return live

    def __repr__(self) -> str:
        return f"<Aggregate {self._signal.name} {self.id!r} v{self.version}>"


class PastState(msgspec.Struct, Generic[S], frozen=True, kw_only=True):
    """An aggregate's state as it was at ``version`` (read-only, outside the pool)."""

    aggregate_id: str
    version: int
    state: S
    timestamp: datetime | None


class Signal(Generic[S, C]):
    """Runs one aggregate type: creates aggregates, handles commands, informs subscribers.

    Use it as ``async with Signal(config, store=...) as signal:`` or call :meth:`start` and
    :meth:`stop`. Several ``Signal`` objects, in one process or many, may share a store: the
    store's optimistic concurrency keeps them consistent.

    ``telemetry`` receives typed reports (:mod:`eventsignal.telemetry`); the default logs them
    to the ``eventsignal`` logger and costs nothing for levels that logger does not emit.
    ``on_evict(aggregate_id, state, version)`` is called when the pool evicts an aggregate.
    ``instrumentation`` (say :class:`eventsignal.otel.OpenTelemetry`) sees every command,
    append and rebuild; without it the command path does not look for one.
    ``key_retention`` says how many idempotency keys each aggregate keeps, and for how long
    (:class:`~eventsignal.KeyRetention`; by default its newest 100, each for at least a day).
    ``privacy`` (:class:`eventsignal.privacy.Privacy`) says how the personal fields of events
    are keyed, when their classes declare any (see :meth:`forget`).
    """

    def __init__(
        self,
        config: AggregateConfig[S, C],
        *,
        store: EventStore | None = None,
        pool_size: int = 100,
        subscribers: Iterable[Subscriber] = (),
        telemetry: TelemetryHook | None = log_telemetry,
        transcoder: Transcoder | None = None,
        conflict_retries: int = 10,
        snapshot_store: SnapshotStore | None = None,
        on_evict: EvictionHook | None = None,
        key_retention: KeyRetention = DEFAULT_RETENTION,
        instrumentation: Instrumentation | None = None,
        privacy: Privacy | None = None,
    ) -> None:
        if conflict_retries < 0:
            raise ConfigurationError("conflict_retries must be zero or more")
        self.config = config
        self.name = config.name
        self.store: EventStore = store if store is not None else MemoryStore()
        self.serializer = EventSerializer(
            config.name,
            config.event_types,
            transcoder,
            config.upcasters,
            personal=personal_data(config.name, config.event_types, privacy),
        )
        self.conflict_retries = conflict_retries
        self.key_retention = key_retention
        # What the store offers beyond the contract, checked once: a runtime protocol check
        # costs tens of microseconds.
        self._keys = self.store if isinstance(self.store, IdempotentStore) else None
        self._shares = self.store if isinstance(self.store, SharedTransactions) else None
        self._instrumentation = instrumentation
        # The store's own methods, and those the instrumentation wraps for traced commands.
        self._append: Append = self.store.append
        self._create_in_store: Create = self.store.create
        self._traced_append: Append = self._append
        self._traced_create: Create = self._create_in_store
        if instrumentation is not None:
            self._traced_append = instrumentation.wrap_append(self.store, self._append)
            self._traced_create = instrumentation.wrap_create(self.store, self._create_in_store)
        if self.serializer.personal is not None:
            from eventsignal.privacy.keychain import subject_key_store_for

            subject_key_store_for(self.store)  # a store that cannot keep keys says so now
        self._recorder: Recorder[S] = Recorder(config, self.serializer, self.store)
        # Rebuilds from just what the event handler reads, where the config and store allow.
        self._lean = lean_fold(config, self.serializer, self.store, DEFAULT_TENANT)
        self._telemetry = telemetry
        self._on_evict = on_evict
        self._pool: Pool[S] = Pool(pool_size, self._evicted)
        self._loading: dict[str, asyncio.Future[LiveAggregate[S]]] = {}  # rebuilds under way
        self._bus = EventBus(subscribers, telemetry)
        self._snapshotter: Snapshotter[S] | None = None
        if config.snapshots is not None:
            snapshots = snapshot_store or snapshot_store_for(self.store)
            if snapshots is None:
                raise ConfigurationError(
                    f"{type(self.store).__name__} keeps no snapshots: "
                    "pass snapshot_store= or drop AggregateConfig.snapshots"
                )
            self._snapshotter = Snapshotter(
                config.name,
                config.snapshots,
                snapshots,
                type(config.initial_state),
                transcoder,
                telemetry,
                self._snapshot_sealer(privacy),
            )
        # Whether a stored command has anything to inform besides telemetry: when not, the
        # command path skips that step altogether.
        self._informs = self._bus.subscriber_count > 0 or self._snapshotter is not None
        self._started = False
        self._watcher: asyncio.Task[None] | None = None  # forgettings elsewhere, if personal
        # Tenants: this Signal serves the default one; views of others share its pool.
        self.tenant = DEFAULT_TENANT
        self._root: Signal[S, C] = self
        self._tenant_views = TenantViews()
        if instrumentation is not None:
            instrumentation.attach(self)

    # Life cycle

    async def start(self) -> None:
        """Open the store and start delivering to subscribers; a second call does nothing."""
        if self._root is not self:
            raise ConfigurationError(self._view_message("start"))
        if self._started:
            return
        await self.store.open()
        if self._snapshotter is not None:
            await self._snapshotter.start()
        self._bus.start()
        self._started = True
        personal = self.serializer.personal
        if personal is not None and hasattr(personal, "privacy"):
            from eventsignal.privacy.watching import watch_forgettings

            self._watcher = asyncio.create_task(
                watch_forgettings(self.store, personal.privacy, self._forgotten_elsewhere)
            )

    async def stop(self) -> None:
        """Deliver queued events, finish snapshots, empty the pool and release the store."""
        if self._root is not self:
            raise ConfigurationError(self._view_message("stop"))
        if not self._started:
            return
        self._started = False
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await self._bus.stop()
        if self._snapshotter is not None:
            await self._snapshotter.close()
        self._pool.clear()
        await self.store.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _view_message(self, action: str) -> str:
        return (
            f"the view of tenant {self.tenant!r} runs while its Signal does: {action} the Signal "
            "it came from"
        )

    # Tenants

    def for_tenant(self, tenant: str) -> Signal[S, C]:
        """This aggregate type inside one tenant (see :mod:`eventsignal.tenants`).

        The answer is a Signal whose commands, reads and rebuilds stay within ``tenant``: the
        same aggregate id in another tenant is another aggregate. It shares this Signal's pool,
        store connections, subscribers and life cycle (start and stop this one). Needs a store
        that keeps tenants (memory, SQLite, PostgreSQL). The default tenant is this Signal.
        """
        root = self._root
        if tenant == DEFAULT_TENANT:
            return root
        return root._tenant_views.view(root, tenant)

    # Queries

    @property
    def pool_size(self) -> int:
        """How many aggregates are live in the pool now."""
        return len(self._pool)

    @property
    def pool_stats(self) -> PoolStats:
        """Counters: hits, misses, evictions, rebuilds, snapshot hits."""
        return self._pool.stats

    async def drain(self) -> None:
        """Wait until subscribers have handled every event stored so far by this Signal,
        and snapshots being taken are stored."""
        await self._bus.drain()
        if self._snapshotter is not None:
            await self._snapshotter.close()

    async def events(self, aggregate_id: str, after_version: int = 0) -> list[Event[Any]]:
        """The aggregate's stored events, decoded (upcast where needed), in version order."""
        self._check_started()
        stored = await self._read_existing(validate_id(aggregate_id), after_version)
        if self.serializer.personal is not None:
            await self.serializer.personal.unlock(self.store, stored)
        decode = self.serializer.decode_all
        return [envelope(record, data) for record in stored for data in decode(record)]

    async def state_at(
        self,
        aggregate_id: str,
        *,
        version: int | None = None,
        timestamp: datetime | None = None,
    ) -> PastState[S]:
        """The aggregate as it was at ``version``, or at ``timestamp`` (its last event at or
        before that moment). Read-only: the live copy in the pool is not touched."""
        self._check_started()
        if (version is None) == (timestamp is None):
            raise ConfigurationError("state_at takes either version= or timestamp=")
        if timestamp is not None and timestamp.tzinfo is None:
            raise ConfigurationError("state_at needs a timezone-aware timestamp")
        stored = await self._read_existing(validate_id(aggregate_id), 0)
        if stored and stored[0].version != 1:  # truncated: from the snapshot it kept
            state, reached, when = await streams.past_state_truncated(
                self, aggregate_id, list(stored), version, timestamp
            )
            return PastState(
                aggregate_id=aggregate_id, version=reached, state=state, timestamp=when
            )
        if version is not None:
            if not 0 <= version <= len(stored):
                raise VersionOutOfRange(self.name, aggregate_id, version, len(stored))
            stored = stored[:version]
        else:
            assert timestamp is not None
            stored = [record for record in stored if record.timestamp <= timestamp]
        past = LiveAggregate(aggregate_id, self.config.initial_state, 0)
        await self._fold(past, stored)
        return PastState(
            aggregate_id=aggregate_id,
            version=past.version,
            state=past.state,
            timestamp=stored[-1].timestamp if stored else None,
        )

    # Personal data

    def _snapshot_sealer(self, privacy: Privacy | None) -> Any:
        """What seals snapshots of states folded from personal data; ``None`` without any."""
        if self.serializer.personal is None:
            return None
        from eventsignal.privacy.snapshots import SnapshotSealer

        return SnapshotSealer(self.name, self.store, privacy or Privacy())

    async def forget(self, subject: object) -> Forgetting:
        """Forget a data subject: destroy its key in the store and record when (by a digest
        of ``subject``, never the subject itself).

        The snapshots of the aggregates whose events named the subject are dropped, and those
        of this type are evicted from this Signal's pool: from now on they, :meth:`events`,
        :meth:`state_at` and subscriptions read the redacted values of its personal fields.
        Read models that hold the plaintext are rebuilt with
        :func:`eventsignal.subscriptions.rebuild` (or ``eventsignal forget --rebuild``). Other
        processes notice within their ``Privacy.key_ttl``; see the guide for what lies beyond
        the store.
        """
        self._check_started()
        from eventsignal.privacy.forgetting import drop_snapshots, forget

        personal = self.serializer.personal
        privacy = getattr(personal, "privacy", None)
        snapshots = self._snapshotter.store if self._snapshotter is not None else None
        done = await forget(self.store, subject, privacy=privacy or Privacy(), snapshots=snapshots)
        mine = [aggregate_id for name, aggregate_id in done.aggregates if name == self.name]
        for aggregate_id in mine:
            self._pool.discard(aggregate_id)
        if self._snapshotter is not None:
            # A snapshot of the plaintext may have been under way: let it land, then drop it.
            await self._snapshotter.close()
            await drop_snapshots(self.store, done.aggregates, snapshots)
        for aggregate_id in mine:
            self._pool.discard(aggregate_id)
        return done

    async def _forgotten_elsewhere(self, aggregates: Sequence[tuple[str, str]]) -> None:
        """Another process forgot a subject: evict the live copies holding its plaintext, and
        drop any snapshot this process may have taken of them since."""
        from eventsignal.privacy.forgetting import drop_snapshots
        from eventsignal.privacy.keychain import keychain_for
        from eventsignal.privacy.snapshots import snapshot_digest

        mine = tuple((name, i) for name, i in aggregates if name == self.name)
        privacy = self.serializer.personal.privacy
        for _, aggregate_id in mine:
            self._pool.discard(aggregate_id)
            keychain_for(self.store).drop(snapshot_digest(privacy, self.name, aggregate_id))
        if self._snapshotter is not None and mine:
            await self._snapshotter.close()
            await drop_snapshots(self.store, mine, self._snapshotter.store)

    # Commands

    def create(
        self,
        aggregate_id: str,
        command: C | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> Coroutine[Any, Any, Aggregate[S]]:
        """Record a new aggregate in the store, at version 0 with the initial state.

        With a ``command`` (a genesis command), the command runs against the initial state and
        its events are stored together with the creation, atomically: if the command is
        rejected or fails, nothing is stored and the id stays free.

        ``idempotency_key`` and ``own_writes`` are those of :meth:`handle_command`: a repeated
        key answers with a handle on the aggregate as it is now, whose ``repeated`` is true,
        instead of :class:`~eventsignal.AggregateExists`.

        The coroutine to await is made here, as ``async def`` would make it: nothing runs
        until it is awaited. It is the one that does the work, not one more layer around it.
        """
        if self._instrumentation is None:
            return self._create(
                aggregate_id, command, metadata, idempotency_key, own_writes, self._create_in_store
            )
        return self._create_traced(aggregate_id, command, metadata, idempotency_key, own_writes)

    async def _create_traced(
        self,
        aggregate_id: str,
        command: C | None,
        metadata: Mapping[str, str] | None,
        idempotency_key: str | None,
        own_writes: OwnWrites | None,
    ) -> Aggregate[S]:
        """:meth:`create` in a span, when the instrumentation is active."""
        self._check_started()
        validate_id(aggregate_id)
        instrumentation = self._instrumentation
        if instrumentation is not None and instrumentation.active:
            return await instrumentation.command(
                self.name,
                aggregate_id,
                command,
                _own(metadata),
                lambda traced: self._create(
                    aggregate_id, command, traced, idempotency_key, own_writes, self._traced_create
                ),
            )
        return await self._create(
            aggregate_id, command, metadata, idempotency_key, own_writes, self._create_in_store
        )

    async def _create(
        self,
        aggregate_id: str,
        command: C | None,
        metadata: Mapping[str, str] | None,
        idempotency_key: str | None,
        own_writes: OwnWrites | None,
        create: Create,
    ) -> Aggregate[S]:
        if not self._root._started:
            self._check_started()
        validate_id(aggregate_id)
        if idempotency_key is not None or own_writes is not None:
            return await self._create_special(
                aggregate_id, command, _own(metadata), idempotency_key, own_writes
            )
        hook = self._telemetry
        if hook is None or (hook is log_telemetry and not _logs(_INFO)):
            info = debug = None  # quiet, as in _run
        else:
            info, debug = self._hooks()
            if debug is not None:
                debug(CreatingAggregate(aggregate_name=self.name, aggregate_id=aggregate_id))
        state = self.config.initial_state
        envelopes: Sequence[Event[Any]] = ()
        records: Sequence[StoredEvent] = ()
        try:
            if command is not None:
                decision = self._recorder.decide(
                    command, state, aggregate_id, 0, {} if metadata is None else _own(metadata)
                )
                if not isinstance(decision, tuple):  # see Recorder.decide
                    decision = await decision
                state, envelopes, records = decision
            positions = await create(self.name, aggregate_id, records)
        except Exception as exc:
            self._name_rejection(exc, aggregate_id)
            self._report(
                CannotCreateAggregate(
                    aggregate_name=self.name, aggregate_id=aggregate_id, reason=str(exc)
                )
            )
            raise
        live = LiveAggregate(aggregate_id, state, len(records))
        self._pool.put(live)
        if debug is not None:
            debug(AggregateCreated(aggregate_name=self.name, aggregate_id=aggregate_id))
        if envelopes and (self._informs or info is not None or debug is not None):
            self._after_commit(live, command, 0, envelopes, positions, info, debug)
        return Aggregate(self, live)

    async def aggregate(self, aggregate_id: str) -> Aggregate[S]:
        """A handle on an existing aggregate, from the pool or rebuilt from the store."""
        self._check_started()
        live = self._pool.get(aggregate_id)
        if live is None:
            live = await self._load(aggregate_id)
        return Aggregate(self, live)

    def handle_command(
        self,
        aggregate_id: str,
        command: C,
        *,
        metadata: Mapping[str, str] | None = None,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 5.0,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> Coroutine[Any, Any, S]:
        """Run a command on the aggregate with this id; return the new state once stored.

        ``metadata`` (say correlation and causation ids) is stored with each event. With
        ``wait_for``, the call returns only once the named durable subscriptions have processed
        the command's events (read-your-writes), or raises
        :class:`~eventsignal.subscriptions.SubscriptionTimeout` after ``wait_timeout`` seconds;
        the events are stored either way.

        With an ``idempotency_key`` the command runs once for this aggregate: the key is stored
        with its events, atomically, and a repeat with the same key (from this process or
        another, after eviction or restart) runs nothing and returns the current state; use
        :meth:`run_command` to tell a repeat apart. A key is at most 200 characters. A command
        that decides no events stores nothing, its key neither.

        ``own_writes(tx, events)`` (SQLite and PostgreSQL stores) writes the application's own
        rows in the database transaction that stores the command's events: both commit, or
        neither. It runs before the events are stored, once per attempt (again after a version
        conflict), and an error it raises fails this command only.

        The coroutine to await is made here, as ``async def`` would make it: nothing runs
        until it is awaited. Without options or instrumentation it is the one that runs the
        command, not one more layer around it.
        """
        if idempotency_key is None and own_writes is None and self._instrumentation is None:
            return self._run(aggregate_id, command, metadata, wait_for, wait_timeout, self._append)
        return self._handle_command(
            aggregate_id, command, metadata, wait_for, wait_timeout, idempotency_key, own_writes
        )

    async def _handle_command(
        self,
        aggregate_id: str,
        command: C,
        metadata: Mapping[str, str] | None,
        wait_for: Sequence[str],
        wait_timeout: float,
        idempotency_key: str | None,
        own_writes: OwnWrites | None,
    ) -> S:
        """:meth:`handle_command` with options, or an instrumentation."""
        live = self._pool.get(aggregate_id)
        if live is None:
            self._check_started()
            live = await self._load(aggregate_id)
        if idempotency_key is None and own_writes is None:
            return await self._execute(live, command, metadata, wait_for, wait_timeout)
        result = await self._execute_special(
            live, command, metadata, wait_for, wait_timeout, idempotency_key, own_writes
        )
        return result.state

    async def run_command(
        self,
        aggregate_id: str,
        command: C,
        *,
        metadata: Mapping[str, str] | None = None,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 5.0,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> CommandResult[S]:
        """As :meth:`handle_command`, answering with a :class:`~eventsignal.CommandResult`:
        the state and version reached, and whether the idempotency key was a ``repeated`` one."""
        live = self._pool.get(aggregate_id)
        if live is None:
            self._check_started()
            live = await self._load(aggregate_id)
        return await self._execute_special(
            live, command, metadata, wait_for, wait_timeout, idempotency_key, own_writes
        )

    # Stream lifecycle (see eventsignal.streams and docs/stores.md)

    async def stream_status(self, aggregate_id: str) -> StreamStatus:
        """Whether the aggregate's stream is live, archived or deleted, and what it holds."""
        return await streams.stream_status(self, aggregate_id)

    async def archive(self, aggregate_id: str) -> LifecycleResult:
        """Move the aggregate's events to cold storage: they leave ``read_all`` and rebuilds,
        and the aggregate refuses commands (:class:`~eventsignal.domain.errors.AggregateArchived`)
        until :meth:`restore`."""
        return await streams.archive(self, aggregate_id)

    async def restore(self, aggregate_id: str) -> LifecycleResult:
        """Bring an archived aggregate's events back, at their original positions and
        versions; it takes commands again."""
        return await streams.restore(self, aggregate_id)

    async def delete(self, aggregate_id: str) -> LifecycleResult:
        """Delete the aggregate's events and snapshot for good. A deletion record
        (:class:`~eventsignal.stores.lifecycle.StreamDeleted`) is appended to the log for
        subscriptions; the id can never be created again."""
        return await streams.delete(self, aggregate_id)

    async def truncate_before(self, aggregate_id: str, version: int) -> LifecycleResult:
        """Remove the events before ``version``; refused
        (:class:`~eventsignal.domain.errors.NoUsableSnapshot`) unless a snapshot this Signal
        can read stands at ``version - 1`` or later. Rebuilds then start from it."""
        return await streams.truncate_before(self, aggregate_id, version)

    # Internals

    def _check_started(self) -> None:
        if not self._root._started:
            raise NotStarted(
                f"Signal {self.name!r} is not started: use 'async with signal:' "
                "or 'await signal.start()'"
            )

    def _report(self, report: Any) -> None:
        if self._telemetry is not None:
            self._telemetry(report)

    def _hooks(self) -> Hooks:
        """The telemetry hook for info reports and for debug reports, each ``None`` where the
        report would be dropped anyway: the default hook logs, and a report its logger does not
        emit is not worth building. Checked once per command, since levels can change at any
        time."""
        hook = self._telemetry
        if hook is None:
            return _QUIET
        if hook is not log_telemetry:
            return hook, hook
        if not _logs(_INFO):  # nor, then, for DEBUG: the common case
            return _QUIET
        return hook, (hook if _logs(logging.DEBUG) else None)

    def _name_rejection(self, exc: Exception, aggregate_id: str) -> None:
        """Say which aggregate refused: a command handler raises :class:`CommandRejected`
        without knowing the name and id the message should carry."""
        if isinstance(exc, CommandRejected):
            exc.aggregate_name, exc.aggregate_id = self.name, aggregate_id

    def _evicted(self, live: LiveAggregate[S]) -> None:
        hook = self._telemetry
        # Quiet (as in _run) unless a hook would take the report.
        debug = None if hook is log_telemetry and not _logs(_INFO) else self._hooks()[1]
        if debug is not None:
            debug(
                AggregateEvicted(
                    aggregate_name=self.name, aggregate_id=live.id, version=live.version
                )
            )
        if self._on_evict is not None:
            self._on_evict(live.id, live.state, live.version)

    async def _read_existing(self, aggregate_id: str, after_version: int) -> Sequence[StoredEvent]:
        stored = await self.store.read_aggregate(self.name, aggregate_id, after_version)
        if not stored:
            await self._refuse_eventless(aggregate_id)
        return stored

    async def _refuse_eventless(self, aggregate_id: str) -> None:
        """An aggregate that read no events: raise if it was never created, or is archived or
        deleted; return if it was created without events."""
        if not await self.store.exists(self.name, aggregate_id):
            self._report(AggregateMissing(aggregate_name=self.name, aggregate_id=aggregate_id))
            raise AggregateNotFound(self.name, aggregate_id)
        await streams.refuse_closed(self, aggregate_id)

    async def _load(self, aggregate_id: str) -> LiveAggregate[S]:
        """Bring an aggregate into the pool; concurrent callers share one rebuild.

        The rebuild runs in its own task, so a caller that is cancelled while waiting leaves it
        running for the others instead of cancelling them too.
        """
        loading = self._loading.get(aggregate_id)
        if loading is None:
            validate_id(aggregate_id)
            loading = asyncio.ensure_future(self._bring_in(aggregate_id))
            self._loading[aggregate_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(aggregate_id, None))
        return await asyncio.shield(loading)

    async def _bring_in(self, aggregate_id: str) -> LiveAggregate[S]:
        live = self._pool.revive(aggregate_id)
        if live is None:
            live = await self._rebuild(aggregate_id)
        else:
            await self._catch_up(live)  # other writers may have moved on meanwhile
        self._pool.put(live)
        return live

    async def _rebuild(self, aggregate_id: str) -> LiveAggregate[S]:
        """A live aggregate from the latest usable snapshot and the events after it."""
        self._report(HydratingAggregate(aggregate_name=self.name, aggregate_id=aggregate_id))
        instrumentation = self._instrumentation
        if instrumentation is not None and instrumentation.active:
            return await instrumentation.rebuild(
                self.name, aggregate_id, lambda: self._rebuild_from_store(aggregate_id)
            )
        return await self._rebuild_from_store(aggregate_id)

    async def _rebuild_from_store(self, aggregate_id: str) -> LiveAggregate[S]:
        started = time.perf_counter()
        restored = None
        if self._snapshotter is not None:
            restored = await self._snapshotter.restore(aggregate_id)
        if restored is None:
            live = LiveAggregate(aggregate_id, self.config.initial_state, 0)
        else:
            live = LiveAggregate(aggregate_id, restored[0], restored[1])
            self._pool.stats.snapshot_hits += 1
        events = await self._fold_lean(live, restored is None)
        if events is None:  # whole events, through the codecs and upcasters
            if restored is None:
                stored = await self._read_existing(aggregate_id, 0)
            else:
                stored = await self.store.read_aggregate(self.name, aggregate_id, live.version)
            if stored:
                self._check_tail(aggregate_id, live.version, stored[0].version, stored[-1].version)
            await self._fold(live, stored)
            events = len(stored)
        self._pool.stats.rebuilds += 1
        self._report(
            AggregateHydrated(
                aggregate_name=self.name,
                aggregate_id=aggregate_id,
                version=live.version,
                events=events,
                seconds=time.perf_counter() - started,
            )
        )
        return live

    async def _fold_lean(self, live: LiveAggregate[S], from_start: bool) -> int | None:
        """Bring ``live`` up to date from just what the event handler reads (see
        :mod:`eventsignal.folding`); the number of events applied, or ``None`` when this
        aggregate type, this store or one of the rows needs whole events."""
        lean = self._lean
        if lean is None:
            return None
        async with aclosing(lean.read(self.name, live.id, live.version)) as chunks:
            folded = await lean.fold(live.id, live.state, live.version, chunks)
        if folded is None:
            return None
        state, version, applied = folded
        if not applied and from_start:
            await self._refuse_eventless(live.id)
        live.state, live.version = state, version
        return applied

    def _check_tail(self, aggregate_id: str, version: int, first: int, last: int) -> None:
        """Refuse events that do not start right after ``version``: the events in between were
        truncated and no snapshot this code can use covers them."""
        if first != version + 1:
            raise HistoryTruncated(self.name, aggregate_id, last, first, version or None)

    async def _fold(self, live: LiveAggregate[S], stored: Sequence[StoredEvent]) -> None:
        """Apply stored events to a live aggregate, yielding now and then on long histories.

        The live aggregate changes only once every event has applied.
        """
        if self.serializer.personal is not None and stored:
            await self.serializer.personal.unlock(self.store, stored)
        apply = self.config.event_handler
        decode = self.serializer.decode_all
        direct = self.serializer.direct_decoders().get
        state = live.state
        version = live.version
        for start in range(0, len(stored), FOLD_SLICE):
            for record in stored[start : start + FOLD_SLICE]:
                if record.version != version + 1:
                    raise StoreInconsistent(
                        f"{self.name} {live.id!r}: store returned version {record.version} "
                        f"after version {version}"
                    )
                version = record.version
                # Most rows: their bytes decoded as they are, the envelope built in place.
                read = direct(record.name) if record.defect is None else None
                if read is not None:
                    try:
                        data = read(record.data)
                    except Exception:
                        pass  # decode_all below raises the error that names the row
                    else:
                        state = apply(
                            state,
                            Event(
                                id=record.id,
                                aggregate_name=record.aggregate_name,
                                aggregate_id=record.aggregate_id,
                                version=version,
                                name=record.name,
                                timestamp=record.timestamp,
                                position=record.position,
                                data=data,
                                metadata=record.metadata,
                                tenant=record.tenant,
                            ),
                        )
                        continue
                for data in decode(record):
                    state = apply(state, envelope(record, data))
            if start + FOLD_SLICE < len(stored):
                await asyncio.sleep(0)
        live.state = state
        live.version = version

    async def _catch_up(self, live: LiveAggregate[S]) -> None:
        tail = await self.store.read_aggregate(self.name, live.id, live.version)
        try:
            await self._fold(live, tail)
        except BaseException:
            # The tail cannot be applied: drop this copy; the next use rebuilds and reports it.
            self._pool.discard(live.id)
            raise

    def _execute(
        self,
        live: LiveAggregate[S],
        command: object,
        metadata: Mapping[str, str] | None,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 5.0,
    ) -> Awaitable[S]:
        """Run a command in its aggregate's turn (see :meth:`_run`), traced when an active
        instrumentation is configured. A plain function: the untraced path adds no coroutine."""
        instrumentation = self._instrumentation
        if instrumentation is not None and instrumentation.active:
            return instrumentation.command(
                self.name,
                live.id,
                command,
                _own(metadata),
                lambda traced: self._run(
                    live.id, command, traced, wait_for, wait_timeout, self._traced_append, live
                ),
            )
        return self._run(live.id, command, metadata, wait_for, wait_timeout, self._append, live)

    async def _run(
        self,
        aggregate_id: str,
        command: object,
        metadata: Mapping[str, str] | None,
        wait_for: Sequence[str],
        wait_timeout: float,
        append: Append,
        live: LiveAggregate[S] | None = None,
    ) -> S:
        """Run a command in its aggregate's turn; return the new state once it is stored.

        The aggregate is ``live`` if the caller has it, else taken from the pool (or loaded).
        Each attempt decides the command against the live state and appends its events with the
        version that state was built from. After a conflict the aggregate catches up on what the
        other writer stored, and the command is decided again.
        """
        if live is None:
            live = self._pool.get(aggregate_id)
            if live is None:
                self._check_started()
                live = await self._load(aggregate_id)
        hook = self._telemetry
        if hook is None or (hook is log_telemetry and not _logs(_INFO)):
            info = debug = None  # quiet: the common case, checked without a call to _hooks
        else:
            info, debug = self._hooks()
            if info is not None:
                info(
                    ProcessingCommand(
                        aggregate_name=self.name,
                        aggregate_id=live.id,
                        command=type(command).__name__,
                    )
                )
        metadata = {} if metadata is None else _own(metadata)
        decide = self._recorder.decide
        attempt = 0
        if live.busy:  # another command has the turn: wait for ours
            turn = live.enter()
            assert turn is not None
            await live.wait(turn)
        else:  # ours at once (what live.enter() does, without the call)
            live.busy = 1
        try:
            while True:
                version = live.version
                decision = decide(command, live.state, live.id, version, metadata)
                if not isinstance(decision, tuple):  # see Recorder.decide
                    decision = await decision
                state, envelopes, records = decision
                if not records:
                    return state
                try:
                    positions = await append(self.name, live.id, version, records)
                except ConcurrencyError as conflict:
                    attempt += 1
                    await self._conflicted(conflict, live, command, version, attempt)
                    continue
                live.state = state
                live.version = version + len(records)
                if self._informs or info is not None or debug is not None:
                    self._after_commit(live, command, version, envelopes, positions, info, debug)
                break
        except Exception as exc:
            self._command_failed(exc, live.id, command)
            raise
        finally:
            live.busy -= 1
            if live.busy:  # others wait for the turn
                live.hand_on()
            if self._pool.overflowing:
                self._pool.trim()
        if wait_for:
            # Waited for outside the turn, so other commands to this aggregate are not held up.
            await self._wait_for(wait_for, positions[-1], wait_timeout)
        return state

    def _execute_special(
        self,
        live: LiveAggregate[S],
        command: object,
        metadata: Mapping[str, str] | None,
        wait_for: Sequence[str],
        wait_timeout: float,
        key: str | None,
        own_writes: OwnWrites | None,
    ) -> Awaitable[CommandResult[S]]:
        """:meth:`_run_special`, traced when an active instrumentation is configured."""
        instrumentation = self._instrumentation
        if instrumentation is not None and instrumentation.active:
            return instrumentation.command(
                self.name,
                live.id,
                command,
                _own(metadata),
                lambda traced: self._run_special(
                    live, command, traced, wait_for, wait_timeout, key, own_writes
                ),
            )
        return self._run_special(live, command, metadata, wait_for, wait_timeout, key, own_writes)

    async def _run_special(
        self,
        live: LiveAggregate[S],
        command: object,
        metadata: Mapping[str, str] | None,
        wait_for: Sequence[str],
        wait_timeout: float,
        key: str | None,
        own_writes: OwnWrites | None,
    ) -> CommandResult[S]:
        """:meth:`_run` for a command with an idempotency key, own writes, or both.

        Apart, so that commands without either take the plain path and pay nothing for them.
        The key is looked up in the store within the aggregate's turn, before the handler runs,
        and again after every conflict: another writer may have stored the same command since.
        """
        info = self._hooks()[0]
        if info is not None:
            info(
                ProcessingCommand(
                    aggregate_name=self.name, aggregate_id=live.id, command=type(command).__name__
                )
            )
        metadata = _own(metadata)
        digest = self._check_options(live.id, command, key, own_writes)
        decided = self._recorder.decided
        attempt = 0
        positions: Sequence[int] = ()
        repeated = False
        turn = live.enter()
        if turn is not None:
            await live.wait(turn)
        try:
            while True:
                if key is not None:
                    found = await self._idempotent().find_command(
                        self.name, live.id, key, self.key_retention
                    )
                    if found is not None:
                        await self._repeated(live, found, digest, command)
                        repeated = True
                        if wait_for:  # the first attempt's events, for the subscriptions
                            positions = await self._positions_of(live.id, found.version)
                        break
                version = live.version
                state, envelopes, records = await decided(
                    command, live.state, live.id, version, metadata
                )
                if not records:
                    return CommandResult(aggregate_id=live.id, state=state, version=version)
                try:
                    positions = await self._store_special(
                        live.id, version, records, envelopes, key, digest, own_writes
                    )
                except ConcurrencyError as conflict:
                    attempt += 1
                    await self._conflicted(conflict, live, command, version, attempt)
                    continue
                except CommandKeyTaken:
                    # Stored meanwhile by another writer: the next round finds it.
                    attempt += 1
                    if attempt > self.conflict_retries:
                        raise
                    self._report(
                        CommandConflicted(
                            aggregate_name=self.name,
                            aggregate_id=live.id,
                            command=type(command).__name__,
                            expected_version=version,
                            attempt=attempt,
                        )
                    )
                    continue
                live.state = state
                live.version = version + len(records)
                info, debug = self._hooks()
                if self._informs or info is not None or debug is not None:
                    self._after_commit(live, command, version, envelopes, positions, info, debug)
                break
            # Taken in the turn: commands queued behind this one may move the aggregate on.
            result = CommandResult(
                aggregate_id=live.id, state=live.state, version=live.version, repeated=repeated
            )
        except Exception as exc:
            self._command_failed(exc, live.id, command)
            raise
        finally:
            live.leave()
            if self._pool.overflowing:
                self._pool.trim()
        if wait_for and positions:
            await self._wait_for(wait_for, positions[-1], wait_timeout)
        return result

    async def _positions_of(self, aggregate_id: str, version: int) -> Sequence[int]:
        """The position of the aggregate's event at ``version``, if it has one."""
        if version == 0:
            return ()
        stored = await self.store.read_aggregate(self.name, aggregate_id, version - 1)
        return [stored[0].position] if stored else ()

    def _check_options(
        self, aggregate_id: str, command: object, key: str | None, own_writes: OwnWrites | None
    ) -> str:
        """Refuse a key no store could keep, or a store that cannot do what is asked; return
        the command's digest when there is a key."""
        if (own_writes is not None or key is not None) and self._root is not self:
            what = "own_writes" if own_writes is not None else "idempotency keys"
            raise ConfigurationError(
                f"{what} are not offered within a tenant yet (tenant {self.tenant!r}); "
                "use them on the default tenant's Signal"
            )
        if own_writes is not None and self._shares is None:
            raise ConfigurationError(
                f"own_writes needs a SQL store (SQLite or PostgreSQL), whose transaction the "
                f"application's rows can share; {type(self.store).__name__} has none"
            )
        if key is None:
            return ""
        check_key(self.name, aggregate_id, key)
        self._idempotent()
        return command_digest(command)

    def _idempotent(self) -> IdempotentStore:
        store = self._keys
        if store is None:
            raise ConfigurationError(
                f"{type(self.store).__name__} keeps no idempotency keys: it lacks append_keyed, "
                "create_keyed and find_command (see eventsignal.stores.idempotency)"
            )
        return store

    async def _store_special(
        self,
        aggregate_id: str,
        version: int,
        records: Sequence[StoredEvent],
        envelopes: Sequence[Event[Any]],
        key: str | None,
        digest: str,
        own_writes: OwnWrites | None,
        *,
        create: bool = False,
    ) -> Sequence[int]:
        """Store a command's events with its key, in the application's transaction if it has
        writes of its own."""
        command_key = None
        if key is not None:
            command_key = CommandKey(key=key, digest=digest, recorded_at=datetime.now(UTC))
        retention = self.key_retention
        if own_writes is not None:
            shared = self._shares
            assert shared is not None  # checked by _check_options
            async with shared.transaction() as tx:
                await own_writes(tx, envelopes)
                if create:
                    return await shared.create_in(
                        tx, self.name, aggregate_id, records, key=command_key, retention=retention
                    )
                return await shared.append_in(
                    tx,
                    self.name,
                    aggregate_id,
                    version,
                    records,
                    key=command_key,
                    retention=retention,
                )
        assert command_key is not None
        store = self._idempotent()
        if create:
            return await store.create_keyed(
                self.name, aggregate_id, records, command_key, retention
            )
        return await store.append_keyed(
            self.name, aggregate_id, version, records, command_key, retention
        )

    async def _repeated(
        self, live: LiveAggregate[S], found: RecordedCommand, digest: str, command: object
    ) -> None:
        """Check that a repeated key came with the same command; bring the live aggregate up to
        date, so the caller gets the state as it is now."""
        if found.digest and digest and found.digest != digest:
            raise IdempotencyKeyReused(self.name, live.id, found.key, type(command).__name__)
        await self._catch_up(live)

    async def _create_special(
        self,
        aggregate_id: str,
        command: C | None,
        metadata: Mapping[str, str],
        key: str | None,
        own_writes: OwnWrites | None,
    ) -> Aggregate[S]:
        """:meth:`create` with an idempotency key, own writes, or both."""
        digest = self._check_options(aggregate_id, command, key, own_writes)
        if key is not None:
            repeat = await self._created_before(aggregate_id, key, digest, command)
            if repeat is not None:
                return repeat
        state = self.config.initial_state
        envelopes: Sequence[Event[Any]] = ()
        records: Sequence[StoredEvent] = ()
        try:
            if command is not None:
                state, envelopes, records = await self._recorder.decided(
                    command, state, aggregate_id, 0, metadata
                )
            positions = await self._store_special(
                aggregate_id, 0, records, envelopes, key, digest, own_writes, create=True
            )
        except Exception as exc:
            if key is not None and isinstance(exc, AggregateExists | CommandKeyTaken):
                # Another writer may have created it meanwhile, with the same command.
                repeat = await self._created_before(aggregate_id, key, digest, command)
                if repeat is not None:
                    return repeat
            self._name_rejection(exc, aggregate_id)
            self._report(
                CannotCreateAggregate(
                    aggregate_name=self.name, aggregate_id=aggregate_id, reason=str(exc)
                )
            )
            raise
        live = LiveAggregate(aggregate_id, state, len(records))
        self._pool.put(live)
        info, debug = self._hooks()
        if envelopes and (self._informs or info is not None or debug is not None):
            self._after_commit(live, command, 0, envelopes, positions, info, debug)
        return Aggregate(self, live)

    async def _created_before(
        self, aggregate_id: str, key: str, digest: str, command: object
    ) -> Aggregate[S] | None:
        """A handle on the aggregate if it was created under ``key``, else ``None``."""
        found = await self._idempotent().find_command(
            self.name, aggregate_id, key, self.key_retention
        )
        if found is None:
            return None
        live = self._pool.get(aggregate_id)
        if live is None:
            live = await self._load(aggregate_id)
        turn = live.enter()  # catching up changes the live copy: only in its turn
        if turn is not None:
            await live.wait(turn)
        try:
            await self._repeated(live, found, digest, command)
        finally:
            live.leave()
        return Aggregate(self, live, repeated=True)

    async def _conflicted(
        self,
        conflict: ConcurrencyError,
        live: LiveAggregate[S],
        command: object,
        version: int,
        attempt: int,
    ) -> None:
        """Catch up with the writer that got there first, unless the retries are used up."""
        if attempt > self.conflict_retries:
            raise conflict
        self._report(
            CommandConflicted(
                aggregate_name=self.name,
                aggregate_id=live.id,
                command=type(command).__name__,
                expected_version=version,
                attempt=attempt,
            )
        )
        await self._catch_up(live)

    def _command_failed(self, exc: Exception, aggregate_id: str, command: object) -> None:
        """Report a command that stored nothing: rejected, failed, or out of retries."""
        self._name_rejection(exc, aggregate_id)
        if isinstance(exc, StreamClosed):  # archived or deleted by another process
            self._pool.discard(aggregate_id)
        reason = exc.reason if isinstance(exc, CommandRejected) else f"{type(exc).__name__}: {exc}"
        self._report(
            CommandFailed(
                aggregate_name=self.name,
                aggregate_id=aggregate_id,
                command=type(command).__name__,
                reason=reason,
            )
        )

    async def _wait_for(self, subscriptions: Sequence[str], position: int, seconds: float) -> None:
        if not isinstance(self.store, SubscriptionStore):
            raise ConfigurationError(
                f"wait_for needs subscription state, which {type(self.store).__name__} "
                "does not keep"
            )
        await wait_until_processed(self.store, subscriptions, position, seconds)

    def _after_commit(
        self,
        live: LiveAggregate[S],
        command: object,
        previous_version: int,
        envelopes: Sequence[Event[Any]],
        positions: Sequence[int],
        info: TelemetryHook | None,
        debug: TelemetryHook | None,
    ) -> None:
        """Publish, report and snapshot a stored command.

        The events are durable by now, so nothing here may turn the command into a failure, and
        subscribers get the events whatever else goes wrong: an error from user code met here (a
        telemetry hook, a snapshot predicate) is logged.
        """
        if self._bus.subscriber_count:
            self._bus.publish(
                [_replace(e, position=p) for e, p in zip(envelopes, positions, strict=True)]
            )
        try:
            self._report_stored(live, command, envelopes, info, debug)
            if self._snapshotter is not None:
                self._snapshotter.after_command(live.id, live.state, previous_version, live.version)
        except Exception:
            logger.exception(
                "%s %r: stored version %d, then failed to report or snapshot it",
                self.name,
                live.id,
                live.version,
            )

    def _report_stored(
        self,
        live: LiveAggregate[S],
        command: object,
        envelopes: Sequence[Event[Any]],
        info: TelemetryHook | None,
        debug: TelemetryHook | None,
    ) -> None:
        if debug is not None:
            debug(
                EventsProduced(
                    aggregate_name=self.name,
                    aggregate_id=live.id,
                    names=tuple(e.name for e in envelopes),
                    first_version=envelopes[0].version,
                )
            )
            if self._bus.subscriber_count:
                debug(
                    TriggeringSubscribers(
                        aggregate_name=self.name,
                        aggregate_id=live.id,
                        events=len(envelopes),
                        subscribers=self._bus.subscriber_count,
                    )
                )
        if info is not None:
            info(
                CommandProcessed(
                    aggregate_name=self.name,
                    aggregate_id=live.id,
                    command=type(command).__name__,
                    version=live.version,
                    events=len(envelopes),
                )
            )
