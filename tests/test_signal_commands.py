"""Commands: results, rejections, failures, atomicity and acknowledgement."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from accounts import (
    Account,
    Close,
    Deposit,
    Deposited,
    DepositTwice,
    SlowDeposit,
    Withdraw,
    apply,
    config,
    handle,
)

from eventsignal import (
    CommandRejected,
    ConcurrencyError,
    Event,
    Signal,
    SignalError,
    UnknownEventType,
)
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.stores import MemoryStore, StoredEvent


async def test_command_returns_new_state_and_advances_version() -> None:
    async with Signal(config()) as signal:
        account = await signal.create("a-1")
        state = await account.handle_command(Deposit(10))
        assert state == Account(balance=10, history=(10,))
        assert account.state == state
        assert account.version == 1
        state = await signal.handle_command("a-1", Withdraw(3))
        assert state.balance == 7
        assert account.version == 2


async def test_events_are_stored_with_their_envelope() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as signal:
        await signal.create("a-1")
        await signal.handle_command("a-1", DepositTwice(4), metadata={"correlation_id": "r-9"})
    stored = await store.read_aggregate("account", "a-1")
    assert [(e.version, e.name, e.data) for e in stored] == [
        (1, "Deposited", b'{"amount":4}'),
        (2, "Deposited", b'{"amount":4}'),
    ]
    assert all(e.metadata == {"correlation_id": "r-9"} for e in stored)
    assert stored[0].id != stored[1].id
    assert stored[0].timestamp.tzinfo is not None


async def test_rejected_command_changes_nothing() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as signal:
        account = await signal.create("a-1")
        await account.handle_command(Deposit(5))
        with pytest.raises(CommandRejected) as rejected:
            await account.handle_command(Withdraw(50))
        assert rejected.value.reason == "balance 5 is less than 50"
        assert rejected.value.aggregate_id == "a-1"
        assert "a-1" in str(rejected.value)
        assert (account.state.balance, account.version) == (5, 1)
        assert len(await store.read_aggregate("account", "a-1")) == 1


async def test_empty_event_list_is_a_no_op() -> None:
    def ignore(command: object, state: Account) -> list[Any]:
        return []

    cfg = config(command_handler=ignore, events=[Deposited])
    async with Signal(cfg) as signal:
        account = await signal.create("a-1")
        assert await account.handle_command(Deposit(1)) == Account()
        assert account.version == 0


class Boom(Exception):
    pass


async def test_exception_in_command_handler_reaches_caller_and_pool_keeps_serving() -> None:
    def explode(command: Any, state: Account) -> Any:
        if command == Deposit(13):
            raise Boom("unlucky")
        return handle(command, state)

    cfg = config(command_handler=explode, events=[Deposited])
    store = MemoryStore()
    async with Signal(cfg, store=store) as signal:
        account = await signal.create("a-1")
        await account.handle_command(Deposit(1))
        with pytest.raises(Boom):
            await account.handle_command(Deposit(13))
        assert (account.state.balance, account.version) == (1, 1)
        assert (await account.handle_command(Deposit(2))).balance == 3
        assert len(await store.read_aggregate("account", "a-1")) == 2


async def test_exception_in_event_handler_stores_nothing() -> None:
    def fragile(state: Account, event: Event[Any]) -> Account:
        if event.version == 2:
            raise Boom("cannot apply")
        return apply(state, event)

    cfg = config(event_handler=fragile, events=[Deposited])
    store = MemoryStore()
    async with Signal(cfg, store=store) as signal:
        account = await signal.create("a-1")
        with pytest.raises(Boom):
            await account.handle_command(DepositTwice(3))  # the second event fails to apply
        assert (account.state, account.version) == (Account(), 0)
        assert list(await store.read_aggregate("account", "a-1")) == []
        assert (await signal.aggregate("a-1")).version == 0


async def test_unregistered_event_class_is_a_clear_error_and_stores_nothing() -> None:
    cfg = config(events=[Deposited])  # Closed is not registered
    store = MemoryStore()
    async with Signal(cfg, store=store) as signal:
        await signal.create("a-1")
        with pytest.raises(UnknownEventType) as unknown:
            await signal.handle_command("a-1", Close())
        assert unknown.value.event_name == "Closed"
        assert unknown.value.version == 1
        assert unknown.value.aggregate_id == "a-1"
        assert list(await store.read_aggregate("account", "a-1")) == []


async def test_commands_to_one_aggregate_are_serialized() -> None:
    async with Signal(config()) as signal:
        await signal.create("a-1")
        gate = asyncio.Event()
        slow = asyncio.create_task(signal.handle_command("a-1", SlowDeposit(1, gate)))
        await asyncio.sleep(0.01)
        fast = asyncio.create_task(signal.handle_command("a-1", Deposit(2)))
        await asyncio.sleep(0.01)
        assert not fast.done()  # waits for the slow command on the same aggregate
        gate.set()
        assert (await slow).history == (1,)
        assert (await fast).history == (1, 2)


async def test_commands_to_different_aggregates_run_concurrently() -> None:
    async with Signal(config()) as signal:
        gates = {name: asyncio.Event() for name in ("a", "b")}
        for name in gates:
            await signal.create(name)
        waiting = [
            asyncio.create_task(signal.handle_command(name, SlowDeposit(1, gate)))
            for name, gate in gates.items()
        ]
        await asyncio.sleep(0.01)
        # Both commands are in their handlers at once; releasing b first completes b first.
        gates["b"].set()
        await asyncio.wait_for(waiting[1], 1)
        assert not waiting[0].done()
        gates["a"].set()
        await asyncio.wait_for(waiting[0], 1)


class GatedStore(MemoryStore):
    """A store whose appends wait for a gate, or fail on request."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: BaseException | None = None

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        *,
        tenant: str = "",
    ) -> Sequence[int]:
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return await super().append(aggregate_name, aggregate_id, expected_version, events)


async def test_command_is_acknowledged_only_after_the_store_confirms() -> None:
    store = GatedStore()
    async with Signal(config(), store=store) as signal:
        account = await signal.create("a-1")
        store.gate.clear()
        command = asyncio.create_task(account.handle_command(Deposit(5)))
        await asyncio.sleep(0.02)
        assert not command.done()
        assert account.version == 0  # the live state does not run ahead of the store
        store.gate.set()
        assert (await command).balance == 5
        assert account.version == 1


async def test_store_failure_fails_the_command_and_keeps_state() -> None:
    store = GatedStore()
    async with Signal(config(), store=store) as signal:
        account = await signal.create("a-1")
        await account.handle_command(Deposit(5))
        store.fail_with = OSError("disk on fire")
        with pytest.raises(OSError, match="disk on fire"):
            await account.handle_command(Deposit(7))
        assert (account.state.balance, account.version) == (5, 1)
        store.fail_with = None
        assert (await account.handle_command(Deposit(1))).balance == 6


async def test_two_signals_on_one_store_never_lose_an_update() -> None:
    store = MemoryStore()
    async with Signal(config(), store=store) as one, Signal(config(), store=store) as two:
        await one.create("shared")
        await two.aggregate("shared")  # both have a live copy at version 0
        await one.handle_command("shared", Deposit(1))
        # two's copy is stale: its append conflicts, it catches up and runs the command again.
        state = await two.handle_command("shared", Deposit(2))
        assert state.history == (1, 2)
        await asyncio.gather(
            *(one.handle_command("shared", Deposit(10)) for _ in range(20)),
            *(two.handle_command("shared", Deposit(100)) for _ in range(20)),
        )
        final = await store.read_aggregate("account", "shared")
        assert [e.version for e in final] == list(range(1, 43))
        async with Signal(config(), store=store) as fresh:
            rebuilt = (await fresh.aggregate("shared")).state
        assert rebuilt.balance == 1 + 2 + 20 * 10 + 20 * 100
        # Each live copy catches up on its next command.
        assert (await one.handle_command("shared", Deposit(1))).balance == rebuilt.balance + 1
        assert (await two.handle_command("shared", Deposit(1))).balance == rebuilt.balance + 2


class AlwaysConflicting(MemoryStore):
    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        *,
        tenant: str = "",
    ) -> Sequence[int]:
        self.attempts = getattr(self, "attempts", 0) + 1
        raise ConcurrencyError(aggregate_name, aggregate_id, expected_version)


async def test_conflict_retries_are_bounded() -> None:
    store = AlwaysConflicting()
    async with Signal(config(), store=store, conflict_retries=3) as signal:
        await signal.create("a-1")
        with pytest.raises(ConcurrencyError):
            await signal.handle_command("a-1", Deposit(1))
        assert store.attempts == 4
        assert (await signal.aggregate("a-1")).version == 0


async def test_cancelled_waiting_command_leaves_the_queue() -> None:
    async with Signal(config()) as signal:
        await signal.create("a-1")
        gate = asyncio.Event()
        first = asyncio.create_task(signal.handle_command("a-1", SlowDeposit(1, gate)))
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(signal.handle_command("a-1", Deposit(100)))
        last = asyncio.create_task(signal.handle_command("a-1", Deposit(2)))
        await asyncio.sleep(0.01)
        waiting.cancel()
        gate.set()
        await first
        assert (await last).history == (1, 2)  # the cancelled command never ran
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await signal.handle_command("a-1", Deposit(3))).history == (1, 2, 3)


async def test_cancelled_command_holding_its_turn_passes_it_on() -> None:
    async with Signal(config()) as signal:
        await signal.create("a-1")
        gate = asyncio.Event()
        holder = asyncio.create_task(signal.handle_command("a-1", SlowDeposit(1, gate)))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(signal.handle_command("a-1", Deposit(2)))
        await asyncio.sleep(0.01)
        holder.cancel()  # cancelled inside its command handler, before anything is stored
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert (await asyncio.wait_for(follower, 1)).history == (2,)


async def test_cancelled_loader_does_not_cancel_others_waiting_for_the_same_rebuild() -> None:
    class SlowReads(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def read_aggregate(
            self,
            aggregate_name: str,
            aggregate_id: str,
            after_version: int = 0,
            *,
            tenant: str = "",
        ) -> Sequence[StoredEvent]:
            await self.release.wait()
            return await super().read_aggregate(
                aggregate_name, aggregate_id, after_version, tenant=tenant
            )

    store = SlowReads()
    store.release.set()
    async with Signal(config(), store=store) as writer:
        await writer.create("a")
        await writer.handle_command("a", Deposit(4))
    store.release.clear()
    async with Signal(config(), store=store) as signal:
        first = asyncio.create_task(signal.aggregate("a"))
        second = asyncio.create_task(signal.aggregate("a"))
        await asyncio.sleep(0.01)
        first.cancel()
        store.release.set()
        assert (await asyncio.wait_for(second, 1)).state.balance == 4
        with pytest.raises(asyncio.CancelledError):
            await first
        assert signal.pool_stats.rebuilds == 1


async def test_errors_after_the_commit_do_not_fail_the_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_policy(state: Account, version: int) -> bool:
        raise RuntimeError("bad predicate")

    cfg = dataclasses.replace(config(), snapshots=SnapshotPolicy(every=None, when=broken_policy))
    store = MemoryStore()
    async with Signal(cfg, store=store) as signal:
        await signal.create("a")
        assert (await signal.handle_command("a", Deposit(2))).balance == 2  # stored: a success
        assert len(await store.read_aggregate("account", "a")) == 1
    assert "stored version 1, then failed to report or snapshot" in caplog.text


async def test_handle_after_stop_says_the_signal_is_stopped() -> None:
    signal = Signal(config(), pool_size=1)
    async with signal:
        handle = await signal.create("a")
    with pytest.raises(SignalError, match="not started"):
        await handle.handle_command(Deposit(1))
