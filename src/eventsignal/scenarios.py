"""Given, when, then: tests of aggregates and projections that read as their specification.

An aggregate, from the events in its past, a command, and what should come of it::

    from eventsignal.scenarios import scenario

    def test_a_paid_cart_cannot_change() -> None:
        (scenario(cart_config)
            .given(ProductAdded(apple), CartPaid(120))
            .when(AddToCart(pear))
            .then_rejected(match="is paid"))

    def test_paying() -> None:
        scenario(cart_config).given(ProductAdded(apple)).when(CompletePurchase()).then(CartPaid(120))

A projection, from the events of any aggregates, to the documents of its read model::

    projection(revenue).given(CartPaid(120), ("cart-2", CartPaid(80))).then(totals, {"all": 200})

Each check runs the real code path: the given events are encoded and stored, the command runs
through a :class:`~eventsignal.Signal` (so an event that would not read back fails here as in
production), a projection through a :class:`~eventsignal.subscriptions.SubscriptionRunner`. The
store is a fresh :class:`~eventsignal.stores.MemoryStore` unless ``store=`` names another (an
unopened one, used for that check only). A failed check raises :class:`AssertionError` showing
the expected and the actual events as a diff.

The checks are plain functions that block: each runs on an event loop of its own (in a helper
thread when called from a running loop), so they fit sync and async tests alike, with no
pytest plugin needed.
"""

from __future__ import annotations

import asyncio
import difflib
import pprint
import re
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from eventsignal.application import Signal
from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import CommandRejected, ConfigurationError
from eventsignal.domain.events import new_event_id
from eventsignal.serialization import EventSerializer
from eventsignal.stores import MemoryStore
from eventsignal.stores.base import EventStore, StoredEvent

if TYPE_CHECKING:
    from eventsignal.subscriptions import ReadModel, Subscription

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")

__all__ = ["AggregateScenario", "ProjectionScenario", "projection", "scenario"]

DEFAULT_ID = "scenario-1"
_NOTHING: Any = object()  # no command given


def scenario(
    config: AggregateConfig[S, C],
    *,
    aggregate_id: str = DEFAULT_ID,
    store: EventStore | None = None,
) -> AggregateScenario[S, C]:
    """A given/when/then check of one aggregate of ``config``, identified by ``aggregate_id``."""
    return AggregateScenario(config, aggregate_id, store)


@dataclass(frozen=True)
class AggregateScenario(Generic[S, C]):
    """Built by :func:`scenario`. Each step returns a new scenario, so one ``given`` can be
    shared by several checks; the ``then`` steps run it."""

    config: AggregateConfig[S, C]
    aggregate_id: str = DEFAULT_ID
    store: EventStore | None = None
    history: tuple[object, ...] = ()
    command: Any = _NOTHING
    metadata: Mapping[str, str] | None = None

    def given(self, *events: object) -> Self:
        """The aggregate's past: event objects, stored in this order (added to any given before).

        Without ``given``, the command of :meth:`when` creates the aggregate (a genesis command).
        """
        return replace(self, history=(*self.history, *events))

    def when(self, command: C, *, metadata: Mapping[str, str] | None = None) -> Self:
        """The command to run against the state the given events built."""
        return replace(self, command=command, metadata=metadata)

    def then(self, *events: object) -> S:
        """Check that the command stored exactly ``events`` (in order); return the new state."""
        __tracebackhide__ = True
        outcome = self._run()
        if isinstance(outcome.error, CommandRejected):
            raise AssertionError(
                f"{self._doing()} was rejected ({outcome.error.reason}), "
                f"but should have stored:\n{_listing(events)}"
            )
        if outcome.error is not None:
            raise outcome.error
        if list(outcome.events) != list(events):
            raise AssertionError(
                f"{self._doing()} stored other events than expected:\n"
                + event_diff(events, outcome.events)
            )
        return outcome.state

    def then_rejected(self, match: str | None = None) -> CommandRejected:
        """Check that the command was rejected (with a reason that ``re.search`` finds
        ``match`` in) and stored nothing; return the rejection."""
        __tracebackhide__ = True
        outcome = self._run()
        error = outcome.error
        if error is None:
            raise AssertionError(
                f"{self._doing()} should have been rejected, but stored:\n"
                f"{_listing(outcome.events) or '  (no events)'}"
            )
        if not isinstance(error, CommandRejected):
            raise AssertionError(
                f"{self._doing()} should have been rejected, but raised "
                f"{type(error).__name__}: {error}"
            ) from error
        if match is not None and not re.search(match, error.reason):
            raise AssertionError(
                f"{self._doing()} was rejected, but for another reason:\n"
                f"  expected a match of: {match!r}\n  actual reason:       {error.reason!r}"
            )
        return error

    def then_state(self, expected: S | Callable[[S], bool]) -> S:
        """Check the state after the command (or after the given events, without one):
        equal to ``expected``, or, for a callable, one it returns true for. Return the state."""
        __tracebackhide__ = True
        outcome = self._run()
        if outcome.error is not None:
            raise AssertionError(
                f"{self._doing()} failed ({type(outcome.error).__name__}: {outcome.error}); "
                "there is no state after it to check"
            ) from outcome.error
        state = outcome.state
        if callable(expected) and not isinstance(expected, type(state)):
            if not expected(state):
                raise AssertionError(
                    f"the state after {self._doing()} does not satisfy {expected!r}:\n"
                    + _indent(pprint.pformat(state, width=88))
                )
        elif state != expected:
            raise AssertionError(
                f"the state after {self._doing()} differs:\n" + object_diff(expected, state)
            )
        return state

    # Running

    def _doing(self) -> str:
        where = f"{self.config.name} {self.aggregate_id!r}"
        if self.command is _NOTHING:
            return f"replaying {len(self.history)} given events on {where}"
        return f"{type(self.command).__name__} on {where}"

    def _run(self) -> _Outcome[S]:
        return run_blocking(self._scenario())

    async def _scenario(self) -> _Outcome[S]:
        signal = Signal(self.config, store=self.store or MemoryStore(), telemetry=None)
        async with signal:
            if self.history:
                records = encode(signal.serializer, self.aggregate_id, 0, self.history)
                await signal.store.create(self.config.name, self.aggregate_id, records)
            if self.command is _NOTHING:
                handle = await signal.aggregate(self.aggregate_id)
                return _Outcome(handle.state, (), None)
            try:
                if self.history:
                    state = await signal.handle_command(
                        self.aggregate_id, self.command, metadata=self.metadata
                    )
                else:
                    created = await signal.create(
                        self.aggregate_id, self.command, metadata=self.metadata
                    )
                    state = created.state
            except Exception as exc:
                return _Outcome(self.config.initial_state, (), exc)
            stored = await signal.events(self.aggregate_id, after_version=len(self.history))
            return _Outcome(state, tuple(e.data for e in stored), None)


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[S]):
    state: S
    events: Sequence[object]
    error: Exception | None


def projection(
    subscription: Subscription, *, store: EventStore | None = None
) -> ProjectionScenario:
    """A given/then check of a durable :class:`~eventsignal.subscriptions.Subscription`."""
    return ProjectionScenario(subscription, store)


@dataclass(frozen=True)
class ProjectionScenario:
    """Built by :func:`projection`: events in, read-model documents out."""

    subscription: Subscription
    store: EventStore | None = None
    history: tuple[object, ...] = ()
    timeout: float = 10.0
    """Seconds the subscription may take to handle the given events."""

    def given(self, *events: object) -> Self:
        """Events to store, in this order: an event object (for aggregate ``scenario-1``) or
        ``(aggregate_id, event)``. Each goes to the aggregate type whose config declares its
        class."""
        return replace(self, history=(*self.history, *events))

    def then(self, read_model: ReadModel[Any], expected: Mapping[str, Any]) -> None:
        """Check that after the subscription handled the given events, ``read_model`` holds
        exactly the documents ``expected`` (key to value)."""
        __tracebackhide__ = True
        documents = run_blocking(self._scenario(read_model))
        if documents != dict(expected):
            raise AssertionError(
                f"read model {read_model.name!r} of subscription {self.subscription.name!r} "
                "differs:\n" + object_diff(dict(expected), documents)
            )

    def run(self) -> None:
        """Store the given events and let the subscription handle them (for handlers whose
        effect the test checks itself); fail if any was parked."""
        __tracebackhide__ = True
        run_blocking(self._scenario(None))

    async def _scenario(self, read_model: ReadModel[Any] | None) -> dict[str, Any]:
        from eventsignal.subscriptions import (
            SubscriptionRunner,
            parked_events,
            wait_until_processed,
        )

        store = self.store or MemoryStore()
        await store.open()
        try:
            head = await self._store_history(store)
            async with SubscriptionRunner(self.subscription, store):
                try:
                    await wait_until_processed(store, self.subscription.name, head, self.timeout)
                finally:
                    parked = await parked_events(store, self.subscription.name)
                    if parked:
                        lines = [
                            f"  {p.event_name} of {p.aggregate_name} {p.aggregate_id!r} "
                            f"v{p.version}: {p.error}"
                            for p in parked
                        ]
                        raise AssertionError(
                            f"subscription {self.subscription.name!r} failed on given events:\n"
                            + "\n".join(lines)
                        )
            if read_model is None:
                return {}
            return {d.key: d.value for d in await read_model.read_all(store)}
        finally:
            await store.close()

    async def _store_history(self, store: EventStore) -> int:
        serializers = self.subscription.serializers
        versions: dict[tuple[str, str], int] = {}
        head = 0
        for given in self.history:
            aggregate_id, event = given if isinstance(given, tuple) else (DEFAULT_ID, given)
            owners = [s for s in serializers.values() if s.name_of(event) is not None]
            if len(owners) != 1:
                raise ConfigurationError(
                    f"{type(event).__name__} is declared by "
                    f"{len(owners) or 'none'} of the subscription's aggregate types "
                    f"({', '.join(serializers)}): cannot tell where to store it"
                )
            name = owners[0].aggregate_name
            version = versions.get((name, aggregate_id), 0)
            records = encode(owners[0], aggregate_id, version, [event])
            if version == 0:
                positions = await store.create(name, aggregate_id, records)
            else:
                positions = await store.append(name, aggregate_id, version, records)
            versions[(name, aggregate_id)] = version + 1
            head = positions[-1]
        return head


# Helpers


def encode(
    serializer: EventSerializer, aggregate_id: str, after_version: int, events: Iterable[object]
) -> list[StoredEvent]:
    """Event objects as the records a store keeps, numbered from ``after_version + 1``."""
    now = datetime.now(UTC)
    records = []
    for version, event in enumerate(events, after_version + 1):
        name, data = serializer.encode(event, aggregate_id=aggregate_id, version=version)
        records.append(
            StoredEvent(
                id=new_event_id(),
                aggregate_name=serializer.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                name=name,
                timestamp=now,
                data=data,
            )
        )
    return records


def run_blocking(job: Coroutine[Any, Any, T]) -> T:
    """Run ``job`` to its end on a loop of its own: here, or in a helper thread when this
    thread already runs a loop (an async test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False  # run below, so that a failure is not shown as raised in this handler
    else:
        running = True
    if not running:
        return asyncio.run(job)
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(job))
        except BaseException as exc:
            failure.append(exc)

    helper = threading.Thread(target=run, name="eventsignal-scenario")
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
    return result[0]


def _lines(values: Iterable[object]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(pprint.pformat(value, width=88).splitlines())
    return out


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _listing(events: Sequence[object]) -> str:
    return _indent("\n".join(_lines(events)))


def event_diff(expected: Sequence[object], actual: Sequence[object]) -> str:
    """The expected and actual events, one per line, as a diff (``-`` expected, ``+`` actual)."""
    return _diff(_lines(expected) or ["(no events)"], _lines(actual) or ["(no events)"])


def object_diff(expected: object, actual: object) -> str:
    """Two values pretty-printed, as a diff (``-`` expected, ``+`` actual)."""
    return _diff(
        pprint.pformat(expected, width=88).splitlines(),
        pprint.pformat(actual, width=88).splitlines(),
    )


def _diff(expected: list[str], actual: list[str]) -> str:
    lines = difflib.ndiff(expected, actual)
    return "  - expected\n  + actual\n" + "\n".join(
        f"  {line}" for line in lines if not line.startswith("?")
    )
