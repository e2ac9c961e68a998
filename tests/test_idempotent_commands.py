"""Idempotent commands: a key runs its command once per aggregate, across evictions, restarts
and processes (two Signals on one store stand for two processes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from accounts import Account, Deposit, Withdraw, config, handle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import (
    CommandResult,
    ConfigurationError,
    Event,
    IdempotencyKeyReused,
    IdempotencyKeyTooLong,
    KeyRetention,
    Signal,
)
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.stores.idempotency import CommandKey, IdempotentStore
from eventsignal.stores.sql import SharedTransactions, SQLStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner
from eventsignal.testing import make_events


class Counted:
    """The account's command handler, counting how often it runs per command."""

    def __init__(self) -> None:
        self.runs: Counter[Any] = Counter()

    async def __call__(self, command: Any, account: Account) -> list[Any]:
        self.runs[command] += 1
        return await handle(command, account)


async def test_a_repeat_runs_nothing_and_says_so() -> None:
    counted = Counted()
    async with Signal(config(command_handler=counted)) as signal:
        await signal.create("a")
        first = await signal.run_command("a", Deposit(5), idempotency_key="pay-1")
        again = await signal.run_command("a", Deposit(5), idempotency_key="pay-1")
        assert first == CommandResult(
            aggregate_id="a", state=Account(5, (5,)), version=1, repeated=False
        )
        assert again == CommandResult(
            aggregate_id="a", state=Account(5, (5,)), version=1, repeated=True
        )
        # handle_command keeps answering with the state, and the handle takes keys too.
        assert await signal.handle_command("a", Deposit(5), idempotency_key="pay-1") == Account(
            5, (5,)
        )
        handle_ = await signal.aggregate("a")
        assert await handle_.handle_command(Deposit(5), idempotency_key="pay-1") == Account(5, (5,))
        repeated = await handle_.run_command(Deposit(5), idempotency_key="pay-1")
        assert repeated.repeated
        assert counted.runs[Deposit(5)] == 1
        # Another key is another command; so is the same key on another aggregate.
        await signal.create("b")
        assert not (await handle_.run_command(Deposit(5), idempotency_key="pay-2")).repeated
        assert not (await signal.run_command("b", Deposit(5), idempotency_key="pay-1")).repeated
        assert [e.version for e in await signal.events("a")] == [1, 2]


async def test_a_repeat_answers_with_the_current_state() -> None:
    async with Signal(config()) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(5), idempotency_key="k")
        await signal.handle_command("a", Deposit(7))
        again = await signal.run_command("a", Deposit(5), idempotency_key="k")
        assert (again.repeated, again.state.balance, again.version) == (True, 12, 2)


async def test_keyed_creation_repeats_as_a_handle() -> None:
    counted = Counted()
    async with Signal(config(command_handler=counted)) as signal:
        first = await signal.create("a", Deposit(3), idempotency_key="open-a")
        again = await signal.create("a", Deposit(3), idempotency_key="open-a")
        assert (first.repeated, again.repeated) == (False, True)
        assert (again.state, again.version) == (Account(3, (3,)), 1)
        assert counted.runs[Deposit(3)] == 1
        empty = await signal.create("e", idempotency_key="open-e")
        assert (await signal.create("e", idempotency_key="open-e")).repeated
        assert not empty.repeated


async def test_a_key_sent_with_another_command_is_refused() -> None:
    async with Signal(config()) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(5), idempotency_key="k")
        with pytest.raises(IdempotencyKeyReused) as reused:
            await signal.handle_command("a", Deposit(6), idempotency_key="k")
        assert (reused.value.aggregate_id, reused.value.key) == ("a", "k")
        with pytest.raises(IdempotencyKeyReused):
            await signal.handle_command("a", Withdraw(5), idempotency_key="k")
        assert (await signal.aggregate("a")).state.balance == 5


async def test_a_key_too_long_names_aggregate_and_key() -> None:
    async with Signal(config()) as signal:
        await signal.create("a")
        with pytest.raises(IdempotencyKeyTooLong) as too_long:
            await signal.handle_command("a", Deposit(5), idempotency_key="k" * 201)
        error = too_long.value
        assert (error.aggregate_name, error.aggregate_id, error.key, error.limit) == (
            "account",
            "a",
            "k" * 201,
            200,
        )
        assert "account 'a'" in str(error)
        assert "201 characters" in str(error)
        with pytest.raises(ConfigurationError):
            await signal.handle_command("a", Deposit(5), idempotency_key="")
        assert await signal.events("a") == []


async def test_a_command_without_events_records_no_key() -> None:
    async with Signal(config(command_handler=lambda command, state: [])) as signal:
        await signal.create("a")
        result = await signal.run_command("a", Deposit(5), idempotency_key="k")
        assert (result.repeated, result.version) == (False, 0)
        assert not (await signal.run_command("a", Deposit(5), idempotency_key="k")).repeated


async def test_retention_is_configurable() -> None:
    store = MemoryStore()
    retention = KeyRetention(keep=2, max_age=None)
    async with Signal(config(), store=store, key_retention=retention) as signal:
        await signal.create("a")
        for n in range(3):
            await signal.handle_command("a", Deposit(1), idempotency_key=f"k{n}")
        # k0 is no longer kept: it runs again, as a new command.
        assert not (await signal.run_command("a", Deposit(1), idempotency_key="k0")).repeated
        assert (await signal.run_command("a", Deposit(1), idempotency_key="k2")).repeated


async def test_own_writes_need_a_sql_store() -> None:
    async def write(tx: Any, events: Any) -> None:
        raise AssertionError("never called")

    async with Signal(config()) as signal:
        await signal.create("a")
        with pytest.raises(ConfigurationError, match="SQL store"):
            await signal.handle_command("a", Deposit(5), own_writes=write)
        with pytest.raises(ConfigurationError, match="SQL store"):
            await signal.create("b", Deposit(5), own_writes=write)
        assert await signal.events("a") == []


# The same behaviour on durable stores, across evictions, restarts and two Signals.


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "nats"]
)
async def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], EventStore]]:
    """A maker of store objects on one backing store: each object stands for a process."""
    if request.param == "memory":
        memory = MemoryStore()
        yield lambda: memory
    elif request.param == "sqlite":
        path = tmp_path / "events.db"
        yield lambda: SQLiteStore(path, migrate=True)
    elif request.param == "nats":
        from eventsignal.stores import NatsStore

        url, stream = request.getfixturevalue("nats_url"), f"test_{uuid4().hex}"
        yield lambda: NatsStore(url, stream=stream)
    else:
        from eventsignal.stores import PostgresStore

        dsn = request.getfixturevalue("postgres_dsn")
        yield lambda: PostgresStore(dsn, migrate=True, max_size=2)


async def test_a_repeat_is_seen_after_eviction_restart_and_elsewhere(
    shared_store: Callable[[], EventStore],
) -> None:
    counted = Counted()
    aggregate = config(command_handler=counted)
    async with Signal(aggregate, store=shared_store(), pool_size=1) as first:
        await first.create("a")
        await first.create("b")
        await first.handle_command("a", Deposit(5), idempotency_key="k")
        await first.handle_command("b", Deposit(1))  # evicts a
        assert (await first.run_command("a", Deposit(5), idempotency_key="k")).repeated
        async with Signal(aggregate, store=shared_store()) as other:  # another process
            await other.aggregate("a")  # live there at version 1
            await first.handle_command("a", Deposit(2), idempotency_key="k2")
            # Its copy is stale: it learns of k2 from the store and catches up.
            again = await other.run_command("a", Deposit(2), idempotency_key="k2")
            assert (again.repeated, again.state.balance, again.version) == (True, 7, 2)
    async with Signal(aggregate, store=shared_store()) as restarted:
        assert (await restarted.run_command("a", Deposit(5), idempotency_key="k")).repeated
    assert counted.runs[Deposit(5)] == 1
    assert counted.runs[Deposit(2)] == 1


@dataclass(frozen=True)
class Step:
    signal: int  # which of the two Signals sends it
    aggregate: str
    key: int  # the amount is derived from the key: one key, one command


steps = st.lists(
    st.lists(
        st.builds(Step, st.integers(0, 1), st.sampled_from(["a", "b"]), st.integers(0, 5)),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=6,
)
restarts = st.lists(st.booleans(), min_size=6, max_size=6)


async def _exactly_once(
    make: Callable[[], EventStore], rounds: list[list[Step]], restart: list[bool], prefix: str
) -> None:
    """Run rounds of keyed commands (each round's concurrently) through two Signals on one
    store, restarting a Signal between rounds where asked; each key must take effect once."""
    aggregate = config()
    signals = [Signal(aggregate, store=make(), pool_size=1, telemetry=None) for _ in range(2)]
    for signal in signals:
        await signal.start()
    ids = {step.aggregate for round_ in rounds for step in round_}
    for aggregate_id in sorted(ids):
        await signals[0].create(prefix + aggregate_id)
    first_runs: Counter[tuple[str, int]] = Counter()
    try:
        for number, round_ in enumerate(rounds):

            async def send(step: Step) -> CommandResult[Account]:
                return await signals[step.signal].run_command(
                    prefix + step.aggregate,
                    Deposit(10 + step.key),
                    idempotency_key=f"key-{step.key}",
                )

            results = await asyncio.gather(*(send(step) for step in round_))
            for step, result in zip(round_, results, strict=True):
                if not result.repeated:
                    first_runs[step.aggregate, step.key] += 1
            if restart[number]:
                which = number % 2
                await signals[which].stop()
                signals[which] = Signal(aggregate, store=make(), pool_size=1, telemetry=None)
                await signals[which].start()
        sent = {(step.aggregate, step.key) for round_ in rounds for step in round_}
        assert first_runs == Counter(sent)  # exactly one attempt per key ran, all others repeated
        for aggregate_id in ids:
            keys = sorted(key for name, key in sent if name == aggregate_id)
            stored = await signals[0].events(prefix + aggregate_id)
            assert sorted(e.data.amount - 10 for e in stored) == keys
            for signal in signals:  # a repeat answers with the current state
                current = await signal.run_command(
                    prefix + aggregate_id, Deposit(10 + keys[0]), idempotency_key=f"key-{keys[0]}"
                )
                assert current.repeated
                assert current.state.balance == sum(10 + key for key in keys)
    finally:
        for signal in signals:
            await signal.stop()


_examples = 0


def _property(make: Callable[[], EventStore]) -> None:
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(rounds=steps, restart=restarts)
    def run(rounds: list[list[Step]], restart: list[bool]) -> None:
        global _examples
        _examples += 1
        asyncio.run(_exactly_once(make, rounds, restart, f"x{_examples}-"))

    run()


def test_each_key_takes_effect_once_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _property(lambda: SQLiteStore(path, migrate=True))


@pytest.mark.postgres
def test_each_key_takes_effect_once_on_postgres(postgres_dsn: str) -> None:
    from eventsignal.stores import PostgresStore

    _property(lambda: PostgresStore(postgres_dsn, migrate=True, max_size=2))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SQLStore]:
    """A maker of SQL store objects on one database (none migrated when made)."""
    if request.param == "sqlite":
        path = tmp_path / "events.db"
        return lambda: SQLiteStore(path)
    from eventsignal.stores import PostgresStore

    dsn = request.getfixturevalue("postgres_dsn")
    return lambda: PostgresStore(dsn, max_size=2)


async def _components(store: SQLStore) -> dict[str, int]:
    async with store.read_transaction() as tx:
        rows = await tx.fetchall("SELECT component, version FROM eventsignal_schema")
    return {name: int(version) for name, version in rows}


async def test_a_database_made_before_keys_existed(sql_store: Callable[[], SQLStore]) -> None:
    # What earlier code made: the events component alone, aggregates written without keys.
    old = sql_store()
    await old.migrate()
    async with Signal(config(), store=old) as before:
        await before.create("a", Deposit(1))
        await before.create("b")
    # A key recorded in the caller's transaction makes the table there, in that transaction.
    fresh = sql_store()
    async with Signal(config(), store=fresh) as another:
        assert "idempotency" not in await _components(fresh)
        assert isinstance(fresh, SharedTransactions)
        key = CommandKey(key="kb", digest="", recorded_at=datetime.now(UTC))
        events = make_events("b", 0, 1, aggregate_name="account")
        async with fresh.transaction() as tx:
            await fresh.append_in(tx, "account", "b", 0, events, key=key)
        assert (await _components(fresh))["idempotency"] == 1
        assert isinstance(fresh, IdempotentStore)
        found = await fresh.find_command("account", "b", "kb")
        assert found is not None
        assert found.version == 1
        result = await another.run_command("a", Deposit(2), idempotency_key="k")
        assert (result.repeated, result.version, result.state.balance) == (False, 2, 3)
    # Another process, on the database as it is now.
    async with Signal(config(), store=sql_store()) as elsewhere:
        assert (await elsewhere.run_command("a", Deposit(2), idempotency_key="k")).repeated


async def test_a_repeat_waits_for_subscriptions_like_the_first_attempt() -> None:
    store = MemoryStore()
    totals: dict[str, int] = {}

    async def project(event: Event[Any]) -> None:
        await asyncio.sleep(0.05)  # slower than the command
        totals[event.aggregate_id] = totals.get(event.aggregate_id, 0) + event.data.amount

    balances = Subscription(name="balances", handler=project, configs=[config()])
    async with Signal(config(), store=store) as signal:
        await signal.create("a")
        await signal.handle_command("a", Deposit(5), idempotency_key="k")  # not waited for
        async with SubscriptionRunner(balances, store):
            again = await signal.run_command(
                "a", Deposit(5), idempotency_key="k", wait_for=["balances"]
            )
            assert again.repeated
            assert totals == {"a": 5}  # the first attempt's event, already projected


async def test_each_keyed_command_answers_with_its_own_state() -> None:
    store = MemoryStore()

    async def project(event: Event[Any]) -> None:
        await asyncio.sleep(0.02)

    slow = Subscription(name="slow", handler=project, configs=[config()])
    async with Signal(config(), store=store) as signal, SubscriptionRunner(slow, store):
        await signal.create("a")
        # The second runs while the first waits for the subscription.
        results = await asyncio.gather(
            signal.run_command("a", Deposit(1), idempotency_key="k1", wait_for=["slow"]),
            signal.run_command("a", Deposit(2), idempotency_key="k2", wait_for=["slow"]),
        )
        assert [(r.version, r.state.balance) for r in results] == [(1, 1), (2, 3)]
