"""The pool of live aggregates: bounded, least recently used evicted first.

The pool holds the only live copy of each aggregate in a process. An aggregate busy with a
command is never evicted, so two copies of one aggregate never diverge inside one process; when
more aggregates are busy at once than the pool holds, it overflows until they finish.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from eventsignal.domain.errors import ConfigurationError

S = TypeVar("S")


class LiveAggregate(Generic[S]):
    """One aggregate's current state in memory, and the turns that serialize its commands.

    Turns are a first-come, first-served lock with no await on the uncontended path, which is
    the common one: a command enters, runs and leaves without anyone else waiting. The queue of
    waiting commands is made on the first contention only: a pool holds many aggregates, and
    most are never contended.
    """

    __slots__ = ("__weakref__", "_waiting", "busy", "id", "state", "version")

    def __init__(self, aggregate_id: str, state: S, version: int) -> None:
        self.id = aggregate_id
        self.state = state
        self.version = version
        self.busy = 0  # commands running or waiting for their turn
        self._waiting: deque[asyncio.Future[None]] | None = None

    def enter(self) -> asyncio.Future[None] | None:
        """Ask for the turn: ``None`` if it is ours now, else a future to :meth:`wait` on."""
        self.busy += 1
        if self.busy == 1:
            return None
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append(turn)
        return turn

    async def wait(self, turn: asyncio.Future[None]) -> None:
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():  # still queued: leave the queue
                assert self._waiting is not None
                self._waiting.remove(turn)
                self.busy -= 1
            else:  # the turn was handed to us as we were cancelled: hand it on
                self.leave()
            raise

    def leave(self) -> None:
        """Give the turn back, to the next command waiting if there is one.

        A caller may do the same inline, ``busy -= 1`` then :meth:`hand_on` if ``busy`` is
        still positive, saving a call when nobody waits.
        """
        self.busy -= 1
        if self._waiting:
            self._waiting.popleft().set_result(None)

    def hand_on(self) -> None:
        """Give the turn to the next command waiting, if there is one."""
        if self._waiting:
            self._waiting.popleft().set_result(None)


_references = sys.getrefcount


class _Detached(weakref.ref[LiveAggregate[Any]]):
    """A weak reference to an evicted aggregate that knows its id, so that one callback shared
    by all of them can forget it, where a closure per eviction would cost an allocation."""

    __slots__ = ("key",)
    key: str


class PoolStats:
    """Counters since the pool was made."""

    __slots__ = ("evictions", "hits", "misses", "rebuilds", "snapshot_hits")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.rebuilds = 0
        self.snapshot_hits = 0  # rebuilds that started from a snapshot

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Pool(Generic[S]):
    """An LRU map of aggregate id to :class:`LiveAggregate`."""

    def __init__(
        self, capacity: int, on_evict: Callable[[LiveAggregate[S]], Any] | None = None
    ) -> None:
        if capacity < 1:
            raise ConfigurationError(f"pool size must be at least 1, not {capacity}")
        self.capacity = capacity
        self.stats = PoolStats()
        self._live: OrderedDict[str, LiveAggregate[S]] = OrderedDict()
        # Evicted aggregates that handles still refer to: reviving one keeps a single copy per id.
        # Plain weak references (cheaper than a WeakValueDictionary); each removes itself.
        self._detached: dict[str, _Detached] = {}
        self._on_evict = on_evict
        self.overflowing = False  # more live than capacity, because the rest were busy

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, aggregate_id: str) -> bool:
        return aggregate_id in self._live

    def get(self, aggregate_id: str) -> LiveAggregate[S] | None:
        """The live aggregate, marked as most recently used, or ``None``."""
        live = self._live.get(aggregate_id)
        if live is None:
            self.stats.misses += 1
            return None
        self._live.move_to_end(aggregate_id)
        self.stats.hits += 1
        return live

    def peek(self, aggregate_id: str) -> LiveAggregate[S] | None:
        """The live aggregate without touching its recency or the counters."""
        return self._live.get(aggregate_id)

    def put(self, live: LiveAggregate[S]) -> None:
        """Add an aggregate as the most recently used one.

        The newcomer itself is never evicted here: it is about to be used. If every other
        aggregate is busy the pool overflows until one of them finishes its command.
        """
        key = live.id
        self._live[key] = live
        self._live.move_to_end(key)
        if len(self._live) > self.capacity:
            self.trim(keep=key)
        else:
            self.overflowing = False

    def put_as(self, key: str, live: LiveAggregate[S]) -> None:
        """:meth:`put` under a key of the caller's (a tenant's aggregates share the pool)."""
        self._live[key] = live
        self._live.move_to_end(key)
        self.trim(keep=key)

    def revive(self, aggregate_id: str) -> LiveAggregate[S] | None:
        """Take back an evicted aggregate that a handle still holds, if there is one."""
        ref = self._detached.pop(aggregate_id, None)
        return None if ref is None else ref()

    def _forget(self, ref: weakref.ref[LiveAggregate[Any]]) -> None:
        """Drop the entry of an evicted aggregate no handle refers to any more."""
        key = ref.key  # type: ignore[attr-defined]
        if self._detached.get(key) is ref:
            del self._detached[key]

    def discard(self, aggregate_id: str) -> None:
        """Forget an aggregate whose live copy can no longer be trusted."""
        self._live.pop(aggregate_id, None)
        self._detached.pop(aggregate_id, None)

    def trim(self, keep: str | None = None) -> None:
        """Evict idle aggregates, oldest first, until the pool fits its capacity."""
        live = self._live
        excess = len(live) - self.capacity
        if excess <= 0:
            self.overflowing = False
            return
        idle: list[str] = []
        for key, agg in live.items():  # oldest first (never empty: it holds too many)
            if not agg.busy and key != keep:
                idle.append(key)
                if len(idle) == excess:
                    break
        del agg  # no reference of anyone's: see the count of references below
        self.overflowing = len(idle) < excess
        detached = self._detached
        forget = self._forget
        on_evict = self._on_evict
        self.stats.evictions += len(idle)
        for key in idle:
            evicted = live.pop(key)
            if on_evict is not None:
                on_evict(evicted)
            # Held only here (and by getrefcount's argument): no handle can revive it.
            if _references(evicted) > 2:
                ref = _Detached(evicted, forget)
                ref.key = key
                detached[key] = ref

    def clear(self) -> None:
        self._live.clear()
        self._detached.clear()


class TenantPool(Generic[S]):
    """One tenant's share of a :class:`Pool`: one LRU and one capacity for every tenant.

    A tenant's aggregate ids are kept under keys of their own (the tenant, a NUL, the id: no id
    or tenant holds a NUL), so the same id in two tenants is two live aggregates, and ten
    thousand tenants still mean one pool.
    """

    __slots__ = ("_prefix", "pool")

    def __init__(self, pool: Pool[S], tenant: str) -> None:
        self.pool = pool
        self._prefix = tenant + "\0"

    @property
    def stats(self) -> PoolStats:
        """The shared pool's counters."""
        return self.pool.stats

    @property
    def overflowing(self) -> bool:
        """Whether the shared pool holds more than its capacity."""
        return self.pool.overflowing

    def __len__(self) -> int:
        return len(self.pool)

    def get(self, aggregate_id: str) -> LiveAggregate[S] | None:
        """As :meth:`Pool.get`, for this tenant's aggregate."""
        return self.pool.get(self._prefix + aggregate_id)

    def peek(self, aggregate_id: str) -> LiveAggregate[S] | None:
        """As :meth:`Pool.peek`, for this tenant's aggregate."""
        return self.pool.peek(self._prefix + aggregate_id)

    def put(self, live: LiveAggregate[S]) -> None:
        """As :meth:`Pool.put`, for this tenant's aggregate."""
        self.pool.put_as(self._prefix + live.id, live)

    def revive(self, aggregate_id: str) -> LiveAggregate[S] | None:
        """As :meth:`Pool.revive`, for this tenant's aggregate."""
        return self.pool.revive(self._prefix + aggregate_id)

    def discard(self, aggregate_id: str) -> None:
        """As :meth:`Pool.discard`, for this tenant's aggregate."""
        self.pool.discard(self._prefix + aggregate_id)

    def trim(self, keep: str | None = None) -> None:
        """Trim the shared pool."""
        self.pool.trim(None if keep is None else self._prefix + keep)

    def clear(self) -> None:
        """Only the Signal that owns the pool empties it."""
