"""A blocking :class:`Signal` for synchronous code: Flask and Django views, scripts, WSGI workers.

The facade owns one event loop, run in a background thread from :meth:`Signal.start` to
:meth:`Signal.stop`. Every call hands its coroutine to that loop and blocks the calling thread
until the answer is there, so any number of threads may call at once (a WSGI server's thread
pool): the commands still run one at a time per aggregate, on one loop, exactly as they do in
:class:`eventsignal.Signal`, which does the work underneath. Answers and exceptions are those of
the async API, unchanged::

    from eventsignal.sync import Signal

    with Signal(cart_config, store=SQLiteStore("shop.db", migrate=True)) as signal:
        cart = signal.create("cart-1")
        state = cart.handle_command(AddToCart(...))

Subscribers, telemetry hooks and ``on_evict`` run in the facade's loop thread. They must not
call the facade themselves (it would wait on its own loop); doing so raises
:class:`~eventsignal.ConfigurationError` instead of hanging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from eventsignal import application
from eventsignal.application import EvictionHook, OwnWrites, PastState
from eventsignal.bus import Subscriber
from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError, NotStarted
from eventsignal.domain.events import Event
from eventsignal.idempotency import CommandResult
from eventsignal.instrumentation import Instrumentation
from eventsignal.pool import PoolStats
from eventsignal.privacy import Forgetting, Privacy
from eventsignal.serialization import EventSerializer, Transcoder
from eventsignal.stores.base import EventStore, SnapshotStore
from eventsignal.stores.idempotency import DEFAULT_RETENTION, KeyRetention
from eventsignal.stores.lifecycle import LifecycleResult, StreamStatus
from eventsignal.telemetry import TelemetryHook, log_telemetry

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")

__all__ = ["Aggregate", "Signal"]


class _LoopThread:
    """An event loop running in a daemon thread of its own, until :meth:`close`.

    Calls are counted, so that closing first refuses new ones, then lets those still running
    finish: a call whose coroutine was scheduled on a loop that then stopped would wait forever.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._running: set[concurrent.futures.Future[Any]] = set()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, job: Coroutine[Any, Any, T], refused: str) -> T:
        """Run ``job`` on the loop and wait for it; its exception is raised here as it is.

        Once closing has begun, the job is refused with :class:`NotStarted` saying ``refused``.
        """
        with self._lock:
            if self._closing:
                job.close()
                raise NotStarted(refused)
            future = asyncio.run_coroutine_threadsafe(job, self.loop)
            self._running.add(future)
        future.add_done_callback(self._forget)
        return self._wait(future)

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)

    @staticmethod
    def _wait(future: concurrent.futures.Future[T]) -> T:
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller gave up (KeyboardInterrupt): so does the job
            raise

    def refuse_calls(self) -> None:
        """Refuse new calls, and wait for those already made."""
        with self._lock:
            self._closing = True
            running = list(self._running)
        concurrent.futures.wait(running)

    def final(self, job: Coroutine[Any, Any, T]) -> T:
        """Run one more job after :meth:`refuse_calls`: the shutdown of what runs on the loop."""
        return self._wait(asyncio.run_coroutine_threadsafe(job, self.loop))

    def close(self) -> None:
        """Finish the loop's own business (async generators, its thread pool) and end it."""

        async def finish() -> None:
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        self.refuse_calls()
        try:
            self.final(finish())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


class Aggregate(Generic[S]):
    """A blocking handle on one aggregate (see :class:`eventsignal.Aggregate`).

    Like the async handle it stays valid after the aggregate is evicted from the pool.
    """

    __slots__ = ("_aggregate", "_signal")

    def __init__(self, signal: Signal[S, Any], aggregate: application.Aggregate[S]) -> None:
        self._signal = signal
        self._aggregate = aggregate

    @property
    def id(self) -> str:
        """The aggregate's id."""
        return self._aggregate.id

    @property
    def state(self) -> S:
        """The current state, as of the last command this process stored."""
        return self._aggregate.state

    @property
    def version(self) -> int:
        """How many events the current state is built from."""
        return self._aggregate.version

    @property
    def repeated(self) -> bool:
        """Whether :meth:`Signal.create` found this aggregate created before under the same
        idempotency key."""
        return self._aggregate.repeated

    def handle_command(
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
        return self._signal._call(
            self._aggregate.handle_command(
                command,
                metadata=metadata,
                wait_for=wait_for,
                wait_timeout=wait_timeout,
                idempotency_key=idempotency_key,
                own_writes=own_writes,
            )
        )

    def run_command(
        self,
        command: object,
        *,
        metadata: Mapping[str, str] | None = None,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 5.0,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> CommandResult[S]:
        """As :meth:`handle_command`, answering with a :class:`~eventsignal.CommandResult`."""
        return self._signal._call(
            self._aggregate.run_command(
                command,
                metadata=metadata,
                wait_for=wait_for,
                wait_timeout=wait_timeout,
                idempotency_key=idempotency_key,
                own_writes=own_writes,
            )
        )

    def __repr__(self) -> str:
        return repr(self._aggregate)


class Signal(Generic[S, C]):
    """Runs one aggregate type like :class:`eventsignal.Signal`, with blocking methods.

    Use it as ``with Signal(config, store=...) as signal:`` or call :meth:`start` and
    :meth:`stop`. The arguments are those of :class:`eventsignal.Signal`. Safe to share between
    threads; the async ``Signal`` underneath is :attr:`signal`.
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
        self.signal: application.Signal[S, C] = application.Signal(
            config,
            store=store,
            pool_size=pool_size,
            subscribers=subscribers,
            telemetry=telemetry,
            transcoder=transcoder,
            conflict_retries=conflict_retries,
            snapshot_store=snapshot_store,
            on_evict=on_evict,
            key_retention=key_retention,
            instrumentation=instrumentation,
            privacy=privacy,
        )
        self._loop: _LoopThread | None = None
        self._life = threading.Lock()  # start and stop, one thread at a time
        self._owner = self  # the facade whose loop runs this one (a tenant's view: another)

    # Plain attributes of the async Signal, read through.

    @property
    def config(self) -> AggregateConfig[S, C]:
        """The aggregate type's declaration."""
        return self.signal.config

    @property
    def name(self) -> str:
        """The aggregate type's name."""
        return self.signal.name

    @property
    def store(self) -> EventStore:
        """The event store."""
        return self.signal.store

    @property
    def serializer(self) -> EventSerializer:
        """Encodes and decodes this aggregate type's events."""
        return self.signal.serializer

    @property
    def conflict_retries(self) -> int:
        """How often a command runs again after another writer got there first."""
        return self.signal.conflict_retries

    @property
    def tenant(self) -> str:
        """The tenant this Signal works in (``""``: the default tenant)."""
        return self.signal.tenant

    @property
    def key_retention(self) -> KeyRetention:
        """How many idempotency keys each aggregate keeps, and for how long."""
        return self.signal.key_retention

    # Life cycle

    def start(self) -> None:
        """Start the loop thread, then the Signal on it (opening the store)."""
        self._refuse_view("start")
        with self._life:
            if self._loop is not None:
                return
            loop = _LoopThread(f"eventsignal-sync:{self.name}")
            try:
                loop.final(self.signal.start())
            except BaseException:
                loop.close()
                raise
            self._loop = loop

    def stop(self) -> None:
        """Deliver queued events, finish snapshots, release the store, then end the loop thread.

        Calls still running finish first; calls made afterwards raise
        :class:`~eventsignal.NotStarted`. The facade may be started again.
        """
        self._refuse_view("stop")
        with self._life:
            loop = self._loop
            if loop is None:
                return
            self._guard(loop)
            loop.refuse_calls()
            self._loop = None
            try:
                loop.final(self.signal.stop())
            finally:
                loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Queries

    @property
    def pool_size(self) -> int:
        """How many aggregates are live in the pool now."""
        return self.signal.pool_size

    @property
    def pool_stats(self) -> PoolStats:
        """Counters: hits, misses, evictions, rebuilds, snapshot hits."""
        return self.signal.pool_stats

    def drain(self) -> None:
        """Wait until subscribers have handled every event stored so far by this Signal,
        and snapshots being taken are stored."""
        self._call(self.signal.drain())

    def events(self, aggregate_id: str, after_version: int = 0) -> list[Event[Any]]:
        """The aggregate's stored events, decoded (upcast where needed), in version order."""
        return self._call(self.signal.events(aggregate_id, after_version))

    def state_at(
        self,
        aggregate_id: str,
        *,
        version: int | None = None,
        timestamp: datetime | None = None,
    ) -> PastState[S]:
        """The aggregate as it was at ``version``, or at ``timestamp``; see
        :meth:`eventsignal.Signal.state_at`."""
        return self._call(self.signal.state_at(aggregate_id, version=version, timestamp=timestamp))

    def forget(self, subject: object) -> Forgetting:
        """Forget a data subject (its personal fields read as redacted from now on); see
        :meth:`eventsignal.Signal.forget`."""
        return self._call(self.signal.forget(subject))

    # Commands

    def create(
        self,
        aggregate_id: str,
        command: C | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        own_writes: OwnWrites | None = None,
    ) -> Aggregate[S]:
        """Record a new aggregate, with the events of an optional genesis ``command``; see
        :meth:`eventsignal.Signal.create`."""
        created = self._call(
            self.signal.create(
                aggregate_id,
                command,
                metadata=metadata,
                idempotency_key=idempotency_key,
                own_writes=own_writes,
            )
        )
        return Aggregate(self, created)

    def aggregate(self, aggregate_id: str) -> Aggregate[S]:
        """A handle on an existing aggregate, from the pool or rebuilt from the store."""
        return Aggregate(self, self._call(self.signal.aggregate(aggregate_id)))

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
    ) -> S:
        """Run a command on the aggregate with this id; return the new state once stored.

        See :meth:`eventsignal.Signal.handle_command` for the options.
        """
        return self._call(
            self.signal.handle_command(
                aggregate_id,
                command,
                metadata=metadata,
                wait_for=wait_for,
                wait_timeout=wait_timeout,
                idempotency_key=idempotency_key,
                own_writes=own_writes,
            )
        )

    def run_command(
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
        the state and version reached, and whether the idempotency key was a repeat."""
        return self._call(
            self.signal.run_command(
                aggregate_id,
                command,
                metadata=metadata,
                wait_for=wait_for,
                wait_timeout=wait_timeout,
                idempotency_key=idempotency_key,
                own_writes=own_writes,
            )
        )

    # Stream lifecycle

    def stream_status(self, aggregate_id: str) -> StreamStatus:
        """Whether the aggregate's stream is live, archived or deleted; see
        :meth:`eventsignal.Signal.stream_status`."""
        return self._call(self.signal.stream_status(aggregate_id))

    def archive(self, aggregate_id: str) -> LifecycleResult:
        """Move the aggregate's events to cold storage; see :meth:`eventsignal.Signal.archive`."""
        return self._call(self.signal.archive(aggregate_id))

    def restore(self, aggregate_id: str) -> LifecycleResult:
        """Bring an archived aggregate back; see :meth:`eventsignal.Signal.restore`."""
        return self._call(self.signal.restore(aggregate_id))

    def delete(self, aggregate_id: str) -> LifecycleResult:
        """Delete the aggregate for good; see :meth:`eventsignal.Signal.delete`."""
        return self._call(self.signal.delete(aggregate_id))

    def truncate_before(self, aggregate_id: str, version: int) -> LifecycleResult:
        """Remove the events before ``version``; see
        :meth:`eventsignal.Signal.truncate_before`."""
        return self._call(self.signal.truncate_before(aggregate_id, version))

    # Beyond the async API

    def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job()`` on the facade's loop and return its result: for async code that must
        share the loop with the store, such as reading a
        :class:`~eventsignal.subscriptions.ReadModel` or running a subscription."""

        async def call() -> T:
            return await job()

        return self._call(call())

    # Tenants

    def for_tenant(self, tenant: str) -> Signal[S, C]:
        """This aggregate type inside one tenant; see :meth:`eventsignal.Signal.for_tenant`.
        The answer runs on this facade's loop thread, while this facade is started."""
        owner = self._owner
        view: Signal[S, C] = object.__new__(type(self))
        view.signal = owner.signal.for_tenant(tenant)
        view._loop = None
        view._life = owner._life
        view._owner = owner
        return view

    # Internals

    def _refuse_view(self, action: str) -> None:
        if self._owner is not self:
            raise ConfigurationError(
                f"the view of tenant {self.signal.tenant!r} runs while its Signal does: "
                f"{action} the Signal it came from"
            )

    def _call(self, job: Coroutine[Any, Any, T]) -> T:
        refused = f"Signal {self.name!r} is not started: use 'with signal:' or 'signal.start()'"
        loop = self._owner._loop
        if loop is None:
            job.close()
            raise NotStarted(refused)
        self._guard(loop, job)
        return loop.call(job, refused)

    def _guard(self, loop: _LoopThread, job: Coroutine[Any, Any, Any] | None = None) -> None:
        if loop.is_current:
            if job is not None:
                job.close()
            raise ConfigurationError(
                f"the sync Signal {self.name!r} was called from its own loop thread (a "
                "subscriber, hook or job it runs): it would wait for itself; use the async "
                "Signal (.signal) there"
            )
