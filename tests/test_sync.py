"""The blocking facade: the same API and answers as the async Signal, from many threads."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from accounts import Account, Deposit, Deposited, Withdraw, config
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsignal import (
    AggregateExists,
    AggregateNotFound,
    CommandRejected,
    ConfigurationError,
    Event,
    NotStarted,
    application,
    sync,
)
from eventsignal.stores import MemoryStore, SQLiteStore

# Methods the async API spells differently, and what the facade adds to it.
_RENAMED = {"__aenter__": "__enter__", "__aexit__": "__exit__"}
_ONLY_SYNC = {"Signal": {"run", "signal"}, "Aggregate": set()}
# Instance attributes of the async Signal, properties of the facade.
_READ_THROUGH = {
    "tenant",
    "config",
    "name",
    "store",
    "serializer",
    "conflict_retries",
    "key_retention",
}


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") or name in {*_RENAMED, *_RENAMED.values(), "__init__"}
    }


def _awaited(annotation: Any) -> Any:
    """What awaiting a method's answer gives: a plain method answering a coroutine is awaited
    as an ``async def`` is."""
    if isinstance(annotation, str) and annotation.startswith("Coroutine[Any, Any, "):
        return annotation.removeprefix("Coroutine[Any, Any, ").removesuffix("]")
    return annotation


def _shape(member: Any) -> tuple[str, Any]:
    """What a caller sees of a member: its kind, and its signature with annotations as text."""
    if isinstance(member, property):
        return "property", inspect.signature(member.fget).return_annotation  # type: ignore[arg-type]
    if callable(member):
        signature = inspect.signature(member)
        parameters = [
            (p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()
        ]
        return "method", (parameters, _awaited(signature.return_annotation))
    return "attribute", type(member)


@pytest.mark.parametrize("name", ["Signal", "Aggregate"])
def test_the_facade_has_the_async_api_member_for_member(name: str) -> None:
    asynchronous = _public(getattr(application, name))
    blocking = _public(getattr(sync, name))
    if name == "Aggregate":  # handles are made by their Signal, never by callers
        del asynchronous["__init__"], blocking["__init__"]
    expected = {_RENAMED.get(n, n) for n in asynchronous if n not in _RENAMED.values()}
    if name == "Signal":
        expected |= _READ_THROUGH
    assert set(blocking) - _ONLY_SYNC[name] == expected
    for member_name, member in asynchronous.items():
        if member_name in _RENAMED.values():
            continue
        counterpart = blocking[_RENAMED.get(member_name, member_name)]
        assert _shape(counterpart) == _shape(member), member_name
        assert not inspect.iscoroutinefunction(counterpart), member_name


def test_plain_attributes_of_the_async_signal_are_read_through() -> None:
    facade = sync.Signal(config())
    public = {name for name in vars(facade.signal) if not name.startswith("_")}
    assert public == _READ_THROUGH
    for name in public:
        assert getattr(facade, name) is getattr(facade.signal, name)


def test_commands_queries_and_errors_as_in_the_async_api() -> None:
    seen: list[Event[Any]] = []
    with sync.Signal(config(), subscribers=[seen.append], telemetry=None) as signal:
        account = signal.create("a")
        assert isinstance(account, sync.Aggregate)
        assert account.handle_command(Deposit(5)).balance == 5
        assert signal.handle_command("a", Withdraw(2), metadata={"by": "test"}).balance == 3
        assert (account.state.balance, account.version) == (3, 2)
        with pytest.raises(CommandRejected, match="balance 3 is less than 9") as rejected:
            signal.handle_command("a", Withdraw(9))
        assert rejected.value.aggregate_id == "a"
        with pytest.raises(AggregateExists):
            signal.create("a")
        with pytest.raises(AggregateNotFound):
            signal.aggregate("nobody")
        assert signal.aggregate("a").state == account.state
        events = signal.events("a")
        assert [(e.version, e.data) for e in events][:1] == [(1, Deposited(5))]
        assert dict(events[1].metadata) == {"by": "test"}
        assert signal.events("a", after_version=1) == events[1:]
        assert signal.state_at("a", version=1).state.balance == 5
        now = signal.state_at("a", timestamp=datetime.now(UTC))
        assert (now.version, now.state) == (2, account.state)
        signal.drain()
        assert [e.version for e in seen] == [1, 2]
        assert signal.pool_size == 1
        assert signal.pool_stats.hits >= 1
        assert signal.run(lambda: signal.signal.events("a")) == events
        assert repr(account) == "<Aggregate account 'a' v2>"


def test_not_started_stopped_and_started_again(tmp_path: Path) -> None:
    signal = sync.Signal(config(), store=SQLiteStore(tmp_path / "a.db", migrate=True))
    with pytest.raises(NotStarted, match="with signal:"):
        signal.create("a")
    with signal:
        handle = signal.create("a")
        handle.handle_command(Deposit(1))
    with pytest.raises(NotStarted):
        handle.handle_command(Deposit(1))
    with pytest.raises(NotStarted):
        signal.events("a")
    signal.stop()  # a second stop does nothing
    with signal:  # a fresh loop, the same store and handle
        assert handle.handle_command(Deposit(2)).balance == 3
    assert not [t for t in threading.enumerate() if t.name.startswith("eventsignal-sync")]


def test_stop_lets_running_calls_finish_and_refuses_new_ones() -> None:
    started, release = threading.Event(), threading.Event()

    async def slow(command: Any, account: Account) -> list[Any]:
        started.set()
        await asyncio.to_thread(release.wait, 10)
        return [Deposited(command.amount)]

    facade = sync.Signal(config(command_handler=slow), telemetry=None)
    facade.start()
    facade.create("a")
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(facade.handle_command, "a", Deposit(4))
        assert started.wait(10)
        stopping = pool.submit(facade.stop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # once stop has begun, new calls are refused
            try:
                facade.events("a")
            except NotStarted:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("calls were still accepted while stopping")
        assert not stopping.done()  # it waits for the command in flight
        release.set()
        assert running.result(timeout=10).balance == 4
        stopping.result(timeout=10)
    with sync.Signal(config(), store=facade.store, telemetry=None) as again:
        assert again.aggregate("a").version == 1  # stored before the end


def test_calling_the_facade_from_its_own_loop_fails_instead_of_hanging() -> None:
    failures: list[BaseException] = []
    facade: sync.Signal[Account, Any]

    def reentrant(event: Event[Any]) -> None:
        try:
            facade.events(event.aggregate_id)
        except ConfigurationError as exc:
            failures.append(exc)

    facade = sync.Signal(config(), subscribers=[reentrant], telemetry=None)
    with facade:
        facade.create("a", Deposit(1))
        facade.drain()
    assert len(failures) == 1
    assert "own loop thread" in str(failures[0])


def test_eight_threads_lose_no_update(tmp_path: Path) -> None:
    threads, rounds = 8, 25
    with sync.Signal(
        config(), store=SQLiteStore(tmp_path / "a.db", migrate=True), telemetry=None
    ) as signal:
        signal.create("shared")
        for n in range(threads):
            signal.create(f"own-{n}")

        def work(n: int) -> None:
            for i in range(rounds):
                signal.handle_command("shared", Deposit(1))
                signal.aggregate(f"own-{n}").handle_command(Deposit(i + 1))

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        assert signal.aggregate("shared").version == threads * rounds
        assert signal.state_at("shared", version=threads * rounds).state.balance == 200
        for n in range(threads):
            assert signal.aggregate(f"own-{n}").state.history == tuple(range(1, rounds + 1))


commands = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.one_of(st.builds(Deposit, st.integers(-2, 5)), st.builds(Withdraw, st.integers(0, 6))),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(commands)
def test_the_same_answers_as_the_async_api(script: list[tuple[str, Any]]) -> None:
    def outcome(run: Any) -> Any:
        try:
            return run().balance
        except CommandRejected as rejected:
            return ("rejected", rejected.aggregate_id, rejected.reason)

    with sync.Signal(config(), store=MemoryStore(), telemetry=None) as blocking:
        blocking.create("a")
        blocking.create("b")
        answers = [outcome(lambda i=i, c=c: blocking.handle_command(i, c)) for i, c in script]
        history = [(e.aggregate_id, e.version, e.data) for i in "ab" for e in blocking.events(i)]

    async def asynchronous() -> tuple[list[Any], list[Any]]:
        async with application.Signal(config(), store=MemoryStore(), telemetry=None) as signal:
            await signal.create("a")
            await signal.create("b")
            found: list[Any] = []
            for aggregate_id, command in script:
                try:
                    found.append((await signal.handle_command(aggregate_id, command)).balance)
                except CommandRejected as rejected:
                    found.append(("rejected", rejected.aggregate_id, rejected.reason))
            events = [
                (e.aggregate_id, e.version, e.data) for i in "ab" for e in await signal.events(i)
            ]
            return found, events

    assert (answers, history) == asyncio.run(asynchronous())


def test_a_tenants_view_runs_on_the_facades_loop() -> None:
    with sync.Signal(config(), telemetry=None) as signal:
        acme = signal.for_tenant("acme")
        acme.create("a", Deposit(5))
        signal.create("a", Deposit(1))
        assert acme.aggregate("a").state.balance == 5
        assert signal.aggregate("a").state.balance == 1
        assert [e.tenant for e in acme.events("a")] == ["acme"]
        assert acme.tenant == "acme"
        with pytest.raises(ConfigurationError, match="start the Signal"):
            acme.start()
    with pytest.raises(NotStarted):
        acme.aggregate("a")
