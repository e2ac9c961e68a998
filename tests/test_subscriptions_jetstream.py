"""JetStreamRunner against a JetStream server of the session's own: order, restarts, failures,
competing runners and status, all kept by the server (no SQL)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import nats
import pytest
from accounts import Deposit, Deposited, DepositTwice, Withdraw, Withdrawn, config
from subscription_worker import expected_from_events, write_carts

from eventsignal import Event, Signal, SignalError
from eventsignal.cart import CartPaid, cart_config
from eventsignal.stores import NatsStore
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.nats.wire import SLOTS
from eventsignal.subscriptions import Subscription, SubscriptionStopped, Transaction
from eventsignal.subscriptions.jetstream import (
    JetStreamRunner,
    jetstream_parked,
    jetstream_status,
    parked_bucket,
)

pytestmark = pytest.mark.nats

accounts = config("account")
savings = config("savings")
ignored = config("ignored")
FAST: dict[str, Any] = {"poll_interval": 0.2, "retry_delay": 0.01, "max_retry_delay": 0.05}


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[NatsStore]:
    store = NatsStore(nats_url, stream=f"test_{uuid4().hex}")
    await store.open()
    yield store
    await store.close()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.delete_stream(store.stream)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_key_value(parked_bucket(store))
    finally:
        await nc.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def stored(store: NatsStore, *names: str) -> list[StoredEvent]:
    events = await store.read_all(0, 100_000)
    return [e for e in events if e.aggregate_name in names]


async def write(store: NatsStore, deposits: int = 3) -> None:
    """Interleave commands on accounts and savings (one of two events) and an ignored type."""
    async with (
        Signal(accounts, store=store, telemetry=None) as a,
        Signal(savings, store=store, telemetry=None) as s,
        Signal(ignored, store=store, telemetry=None) as i,
    ):
        for n in range(deposits):
            for signal in (a, s, i):
                if n == 0:
                    await signal.create("x")
                    await signal.create("y")
                await signal.handle_command("x", Deposit(n + 1))
                await signal.handle_command("y", DepositTwice(n + 1))
        await a.handle_command("x", Withdraw(1))


class Recorder:
    """A handler that records what it gets, and may fail or block on chosen events."""

    def __init__(self) -> None:
        self.events: list[Event[Any]] = []
        self.failures: dict[UUID, int] = {}  # event id -> failures still to raise
        self.attempts: dict[UUID, int] = {}
        self.gate: asyncio.Event | None = None

    async def __call__(self, event: Event[Any]) -> None:
        self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
        if self.gate is not None:
            await self.gate.wait()
        left = self.failures.get(event.id, 0)
        if left:
            self.failures[event.id] = left - 1
            raise RuntimeError(f"failing on {event.position}")
        self.events.append(event)

    @property
    def positions(self) -> list[int]:
        return [e.position for e in self.events]


def subscription(handler: Any, name: str = "audit", **options: Any) -> Subscription:
    options.setdefault("configs", [accounts, savings])
    return Subscription(name=name, handler=handler, **(FAST | options))


async def test_delivers_every_event_in_order_across_aggregates(store: NatsStore) -> None:
    await write(store)
    expected = await stored(store, "account", "savings")
    recorder = Recorder()
    async with JetStreamRunner(subscription(recorder), store) as runner:
        await eventually(lambda: len(recorder.events) >= len(expected))
        await asyncio.sleep(0.1)  # nothing more arrives
    assert recorder.positions == [e.position for e in expected]
    assert [(e.aggregate_name, e.aggregate_id, e.version) for e in recorder.events] == [
        (e.aggregate_name, e.aggregate_id, e.version) for e in expected
    ]
    assert isinstance(recorder.events[0].data, Deposited)
    assert runner.delivered == len(expected)


async def test_one_aggregate_type_and_event_names_narrow_delivery(store: NatsStore) -> None:
    await write(store)
    expected = [e for e in await stored(store, "account") if e.name == "Withdrawn"]
    recorder = Recorder()
    only = subscription(recorder, configs=[accounts], event_names=["Withdrawn"])
    async with JetStreamRunner(only, store):
        await eventually(lambda: len(recorder.events) >= 1)
        await eventually(async_status_lag_zero(store, "audit"))
    assert recorder.positions == [e.position for e in expected]
    assert isinstance(recorder.events[0].data, Withdrawn)


def async_status_lag_zero(store: NatsStore, name: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await jetstream_status(store, name)).lag == 0

    return check


async def test_a_restart_resumes_after_the_last_acknowledged_event(store: NatsStore) -> None:
    await write(store, deposits=2)
    first = Recorder()
    async with JetStreamRunner(subscription(first), store):
        count = len(await stored(store, "account", "savings"))
        await eventually(lambda: len(first.events) == count)
    await write_more(store)
    second = Recorder()
    async with JetStreamRunner(subscription(second), store):
        total = await stored(store, "account", "savings")
        await eventually(lambda: len(first.events) + len(second.events) >= len(total))
        await asyncio.sleep(0.1)
    assert second.events, "the second run had new events to deliver"
    assert first.positions + second.positions == [e.position for e in total]


async def write_more(store: NatsStore) -> None:
    async with Signal(accounts, store=store, telemetry=None) as signal:
        await signal.handle_command("x", Deposit(50))
        await signal.handle_command("y", DepositTwice(60))


async def test_a_runner_stopped_mid_handler_hands_its_event_to_the_next(store: NatsStore) -> None:
    await write(store, deposits=1)
    blocked = Recorder()
    blocked.gate = asyncio.Event()
    async with JetStreamRunner(subscription(blocked), store, ack_wait=5.0):
        await eventually(lambda: len(blocked.attempts) == 1)
    assert blocked.events == []
    recorder = Recorder()
    expected = await stored(store, "account", "savings")
    started = time.monotonic()
    async with JetStreamRunner(subscription(recorder), store, ack_wait=5.0):
        await eventually(lambda: len(recorder.events) == len(expected))
    assert time.monotonic() - started < 2.0, "the message came back without waiting ack_wait"
    assert recorder.positions == [e.position for e in expected]


async def test_a_transient_failure_is_retried_and_succeeds(store: NatsStore) -> None:
    await write(store, deposits=2)
    expected = await stored(store, "account", "savings")
    recorder = Recorder()
    flaky = expected[2]
    recorder.failures[flaky.id] = 2
    async with JetStreamRunner(subscription(recorder, max_attempts=3), store):
        await eventually(lambda: len(recorder.events) == len(expected))
        assert await jetstream_parked(store, "audit") == []
    assert recorder.positions == [e.position for e in expected]
    assert recorder.attempts[flaky.id] == 3
    assert all(n == 1 for event_id, n in recorder.attempts.items() if event_id != flaky.id)


async def test_a_permanent_failure_is_parked_and_delivery_goes_on(store: NatsStore) -> None:
    await write(store, deposits=2)
    expected = await stored(store, "account", "savings")
    recorder = Recorder()
    poison = expected[2]  # the second of a two-event command: its first is not redelivered
    assert (poison.version, expected[1].version) == (2, 1)
    recorder.failures[poison.id] = 1_000
    async with JetStreamRunner(subscription(recorder, max_attempts=3), store) as runner:
        await eventually(lambda: len(recorder.events) == len(expected) - 1)
        await eventually(async_status_lag_zero(store, "audit"))
        parked = await runner.parked()
        status = await runner.status()
    assert recorder.positions == [e.position for e in expected if e.id != poison.id]
    assert recorder.attempts[poison.id] == 3
    assert recorder.attempts[expected[1].id] == 1
    assert [(p.event_id, p.position, p.attempts) for p in parked] == [
        (poison.id, poison.position, 3)
    ]
    assert "RuntimeError: failing on" in parked[0].error
    assert status.parked == 1
    assert status.position == status.head


async def test_the_stop_policy_stops_then_a_fixed_handler_resumes(store: NatsStore) -> None:
    await write(store, deposits=1)
    expected = await stored(store, "account", "savings")
    recorder = Recorder()
    poison = expected[1]
    recorder.failures[poison.id] = 2
    stopping = subscription(recorder, max_attempts=2, on_failure="stop")
    async with JetStreamRunner(stopping, store) as runner:
        with pytest.raises(SubscriptionStopped) as stopped:
            await asyncio.wait_for(runner.wait(), 5)
        assert stopped.value.position == poison.position
        assert [p.position for p in await runner.parked()] == [poison.position]
    assert recorder.positions == [expected[0].position]
    async with JetStreamRunner(stopping, store) as runner:  # the handler succeeds now
        await eventually(lambda: len(recorder.events) == len(expected))
        await eventually(lambda: _empty(runner.parked()))
    assert recorder.positions == [e.position for e in expected]


async def _empty(parked: Awaitable[list[Any]]) -> bool:
    return not await parked


async def test_competing_runners_process_one_at_a_time_and_each_event_once(
    store: NatsStore,
) -> None:
    async with Signal(cart_config, store=store, telemetry=None) as signal:
        await write_carts(signal, [f"cart-{i}" for i in range(15)], seed=3)
    revenue, versions = await expected_from_events(store)
    count = len(await stored(store, "cart"))
    busy = 0
    overlaps = 0
    seen: list[UUID] = []
    paid = 0
    last: dict[str, int] = {}
    out_of_order = 0

    async def project(event: Event[Any]) -> None:
        nonlocal busy, overlaps, paid, out_of_order
        busy += 1
        overlaps += busy > 1
        await asyncio.sleep(0.001)  # let the other runner try to cut in
        if event.version != last.get(event.aggregate_id, 0) + 1:
            out_of_order += 1
        last[event.aggregate_id] = event.version
        if isinstance(event.data, CartPaid):
            paid += event.data.total
        seen.append(event.id)
        busy -= 1

    revenue_subscription = Subscription(
        name="revenue", handler=project, configs=[cart_config], **FAST
    )
    runners = [JetStreamRunner(revenue_subscription, store) for _ in range(2)]
    async with runners[0], runners[1]:
        await eventually(lambda: len(seen) >= count, within=10)
        await asyncio.sleep(0.1)
    assert overlaps == 0
    assert len(seen) == len(set(seen)) == count
    assert out_of_order == 0
    assert paid == revenue > 0
    assert last == versions
    assert all(r.delivered > 0 for r in runners), "both runners took part"


async def test_a_slow_handler_keeps_its_message_past_ack_wait(store: NatsStore) -> None:
    await write(store, deposits=1)
    expected = await stored(store, "account", "savings")
    busy = 0
    overlaps = 0
    seen: list[UUID] = []

    async def slow(event: Event[Any]) -> None:
        nonlocal busy, overlaps
        busy += 1
        overlaps += busy > 1
        if not seen:
            await asyncio.sleep(1.0)  # past ack_wait: the server is told it is in progress
        seen.append(event.id)
        busy -= 1

    runners = [JetStreamRunner(subscription(slow), store, ack_wait=0.6) for _ in range(2)]
    async with runners[0], runners[1]:
        await eventually(lambda: len(seen) >= len(expected))
        await asyncio.sleep(0.1)
    assert overlaps == 0
    assert seen == [e.id for e in expected]


async def test_a_runner_stopped_while_waiting_loses_no_message(store: NatsStore) -> None:
    recorder = Recorder()
    idle, other = (
        JetStreamRunner(subscription(r), store, ack_wait=5.0) for r in (Recorder(), recorder)
    )
    async with other:
        await idle.start()
        await asyncio.sleep(0.05)  # both are waiting on a pull
        await idle.stop()
        await write(store, deposits=1)
        expected = await stored(store, "account", "savings")
        started = time.monotonic()
        await eventually(lambda: len(recorder.events) == len(expected))
    assert time.monotonic() - started < 2.0, "no message went to the stopped runner"
    assert recorder.positions == [e.position for e in expected]


async def test_status_shows_the_lag_then_none(store: NatsStore) -> None:
    await write(store, deposits=2)
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    async with JetStreamRunner(subscription(recorder), store):
        await eventually(lambda: len(recorder.attempts) == 1)
        behind = await jetstream_status(store, "audit")
        recorder.gate.set()
        await eventually(async_status_lag_zero(store, "audit"))
        caught_up = await jetstream_status(store, "audit")
    # Every message from the first one with events to the newest is still to be acknowledged.
    first = (await stored(store, "account", "savings"))[0]
    assert behind.lag == (behind.head - first.position) // SLOTS + 1
    assert behind.in_flight == 1
    assert behind.position < behind.head
    assert caught_up.lag == caught_up.in_flight == caught_up.parked == 0
    assert caught_up.position == caught_up.head == await store.head_position()


async def test_start_at_the_end_skips_what_is_stored(store: NatsStore) -> None:
    await write(store, deposits=1)
    recorder = Recorder()
    async with JetStreamRunner(subscription(recorder, start="end"), store):
        await eventually(async_status_lag_zero(store, "audit"))
        await write_more(store)
        await eventually(lambda: len(recorder.events) == 3)
    assert [e.data for e in recorder.events] == [Deposited(50), Deposited(60), Deposited(60)]


def test_transactional_handlers_and_partitions_are_refused() -> None:
    async def in_tx(event: Event[Any], tx: Transaction) -> None:
        return None

    store = NatsStore("nats://127.0.0.1:4222", stream="unused")
    with pytest.raises(SignalError, match="need SQL"):
        JetStreamRunner(subscription(in_tx), store)
    with pytest.raises(ValueError, match="not partitioned"):
        JetStreamRunner(subscription(Recorder(), partitions=2), store)


async def test_a_foreign_consumer_of_the_same_name_is_not_taken_over(
    nats_url: str, store: NatsStore
) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(nats_url)
    try:
        config = ConsumerConfig(durable_name="audit", ack_policy=AckPolicy.NONE)
        await nc.jetstream().add_consumer(store.stream, config)
    finally:
        await nc.close()
    with pytest.raises(SignalError, match="exists with settings"):
        await JetStreamRunner(subscription(Recorder()), store).start()
    # The failed start closed only its own open of the store: the test's is still there.
    assert await store.head_position() == 0


async def test_an_unreachable_server_is_named_without_its_credentials() -> None:
    from eventsignal import StoreUnavailable

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = NatsStore(f"nats://ann:s3cret@127.0.0.1:{port}", stream="nowhere", timeout=0.5)
    with pytest.raises(StoreUnavailable) as unreachable:
        await jetstream_status(store, "revenue")
    assert "s3cret" not in str(unreachable.value)
    assert "127.0.0.1" in str(unreachable.value)
