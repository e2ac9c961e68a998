"""The application's own rows, written in the transaction that stores a command's events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from accounts import Deposit, config

from eventsignal import ConcurrencyError, Event, OwnWrites, Signal
from eventsignal.stores import SQLiteStore
from eventsignal.stores.sql import Dialect, SQLStore, SQLTransaction, for_dialect


class Boom(Exception):
    pass


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SQLStore]:
    """A maker of store objects on one database, whose ``payments`` table exists."""
    if request.param == "sqlite":
        path = tmp_path / "events.db"

        def make() -> SQLStore:
            return SQLiteStore(path, migrate=True)
    else:
        from eventsignal.stores import PostgresStore

        dsn = request.getfixturevalue("postgres_dsn")

        def make() -> SQLStore:
            return PostgresStore(dsn, migrate=True, max_size=4)

    store = make()
    await store.open()
    try:
        async with store.transaction() as tx:
            await tx.execute(
                "CREATE TABLE payments (account TEXT NOT NULL, version INTEGER NOT NULL,"
                " amount INTEGER NOT NULL, PRIMARY KEY (account, version))"
            )
    finally:
        await store.close()
    return make


def record_payment(dialect: Dialect, *, calls: list[int] | None = None) -> OwnWrites:
    insert = for_dialect("INSERT INTO payments VALUES (?, ?, ?)", dialect)

    async def write(tx: SQLTransaction, events: Sequence[Event[Any]]) -> None:
        if calls is not None:
            calls.append(events[0].version)
        for event in events:
            await tx.execute(insert, (event.aggregate_id, event.version, event.data.amount))

    return write


async def payments(store: SQLStore) -> list[tuple[Any, ...]]:
    async with store.transaction() as tx:
        rows = await tx.fetchall("SELECT account, version, amount FROM payments")
    return sorted(tuple(row) for row in rows)


async def test_own_rows_and_events_commit_together(make_store: Callable[[], SQLStore]) -> None:
    store = make_store()
    async with Signal(config(), store=store) as signal:
        write = record_payment(store.dialect)
        account = await signal.create("a", Deposit(4), own_writes=write)
        assert account.state.balance == 4
        await signal.handle_command("a", Deposit(5), own_writes=write)
        await account.handle_command(Deposit(6), own_writes=write)
        await signal.handle_command("a", Deposit(7))  # no own writes: the group commit
        assert await payments(store) == [("a", 1, 4), ("a", 2, 5), ("a", 3, 6)]
        assert [e.version for e in await signal.events("a")] == [1, 2, 3, 4]


async def test_a_failing_write_stores_nothing(make_store: Callable[[], SQLStore]) -> None:
    store = make_store()
    async with Signal(config(), store=store) as signal:
        await signal.create("a")
        insert = for_dialect("INSERT INTO payments VALUES (?, ?, ?)", store.dialect)

        async def half_then_fail(tx: SQLTransaction, events: Sequence[Event[Any]]) -> None:
            await tx.execute(insert, ("a", 1, 5))
            raise Boom("the application refused")

        with pytest.raises(Boom):
            await signal.handle_command("a", Deposit(5), own_writes=half_then_fail)
        assert await payments(store) == []
        assert await signal.events("a") == []
        assert (await signal.aggregate("a")).version == 0
        # The aggregate and the table are fine for the next command.
        await signal.handle_command("a", Deposit(5), own_writes=record_payment(store.dialect))
        assert await payments(store) == [("a", 1, 5)]


async def test_a_failing_write_fails_only_its_command(make_store: Callable[[], SQLStore]) -> None:
    store = make_store()
    async with Signal(config(), store=store) as signal:
        ids = [f"acc-{n}" for n in range(24)]
        for aggregate_id in ids:
            await signal.create(aggregate_id)
        async with store.transaction() as tx:  # rows that the writes of every third collide with
            await tx.executemany(
                for_dialect("INSERT INTO payments VALUES (?, ?, ?)", store.dialect),
                [(aggregate_id, 1, 0) for aggregate_id in ids[::3]],
            )
        write = record_payment(store.dialect)

        async def send(n: int, aggregate_id: str) -> object:
            own = write if n % 3 == 0 or n % 3 == 1 else None
            try:
                return await signal.handle_command(aggregate_id, Deposit(n + 1), own_writes=own)
            except Exception as exc:
                return exc

        outcomes = await asyncio.gather(*(send(n, i) for n, i in enumerate(ids)))
        failed = [ids[n] for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
        assert failed == ids[::3]  # a unique violation in the database, for those alone
        for n, aggregate_id in enumerate(ids):
            expected = [] if n % 3 == 0 else [1]
            assert [e.version for e in await signal.events(aggregate_id)] == expected
        rows = await payments(store)
        assert [r for r in rows if r[2] != 0] == sorted(
            (aggregate_id, 1, n + 1) for n, aggregate_id in enumerate(ids) if n % 3 == 1
        )


async def test_own_writes_run_again_after_a_conflict(make_store: Callable[[], SQLStore]) -> None:
    calls: list[int] = []
    first_store, second_store = make_store(), make_store()
    async with (
        Signal(config(), store=first_store) as first,
        Signal(config(), store=second_store) as second,
    ):
        await first.create("a")
        await second.aggregate("a")  # live there at version 0
        await first.handle_command("a", Deposit(1))
        write = record_payment(second_store.dialect, calls=calls)
        state = await second.handle_command("a", Deposit(2), own_writes=write)
        assert state.balance == 3
        assert calls == [1, 2]  # the first attempt's rows were rolled back with its conflict
        assert await payments(second_store) == [("a", 2, 2)]


async def test_a_conflict_past_the_retries_rolls_the_rows_back(
    make_store: Callable[[], SQLStore],
) -> None:
    store, other = make_store(), make_store()
    async with (
        Signal(config(), store=store, conflict_retries=0) as signal,
        Signal(config(), store=other) as elsewhere,
    ):
        await signal.create("a")
        await signal.aggregate("a")
        await elsewhere.handle_command("a", Deposit(1))
        with pytest.raises(ConcurrencyError):
            await signal.handle_command("a", Deposit(2), own_writes=record_payment(store.dialect))
        assert await payments(store) == []


async def test_a_keyed_repeat_writes_nothing(make_store: Callable[[], SQLStore]) -> None:
    calls: list[int] = []
    store = make_store()
    async with Signal(config(), store=store) as signal:
        await signal.create("a")
        write = record_payment(store.dialect, calls=calls)
        first = await signal.run_command("a", Deposit(5), idempotency_key="k", own_writes=write)
        again = await signal.run_command("a", Deposit(5), idempotency_key="k", own_writes=write)
        assert (first.repeated, again.repeated) == (False, True)
        assert calls == [1]
        assert await payments(store) == [("a", 1, 5)]
        created = await signal.create("b", Deposit(3), idempotency_key="kb", own_writes=write)
        assert not created.repeated
        assert (await signal.create("b", Deposit(3), idempotency_key="kb")).repeated
        assert await payments(store) == [("a", 1, 5), ("b", 1, 3)]
