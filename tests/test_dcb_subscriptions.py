"""DCB events reach subscriptions in the log's global order, beside aggregate events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcb_examples import courses

from eventsignal import AggregateConfig, Event, Signal
from eventsignal.dcb import dcb_events, view
from eventsignal.stores import MemoryStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner, wait_until_processed


@dataclass(frozen=True)
class Open:
    pass


@dataclass(frozen=True)
class Opened:
    pass


def handle(command: Open, state: int) -> list[Opened]:
    return [Opened()]


def apply(state: int, event: Event[Opened]) -> int:
    return state + 1


ROOM = AggregateConfig(
    name="room", initial_state=0, command_handler=handle, event_handler=apply, events=[Opened]
)


async def test_a_subscription_sees_dcb_and_aggregate_events_in_global_order() -> None:
    seen: list[Event[Any]] = []
    async with MemoryStore() as store, Signal(ROOM, store=store, telemetry=None) as signal:
        engine = courses.engine(view(store))
        await signal.create("r1", Open())
        await engine.handle(courses.DefineCourse("c1", 2))
        await signal.handle_command("r1", Open())
        await engine.handle(courses.Subscribe("s1", "c1"))
        subscription = Subscription(
            name="everything",
            handler=seen.append,
            configs=[ROOM, dcb_events(courses.EVENTS)],
            partitions=2,
        )
        async with SubscriptionRunner(subscription, store):
            await wait_until_processed(store, "everything", await store.head_position(), 5)
    assert [e.name for e in seen] == ["Opened", "CourseDefined", "Opened", "StudentSubscribed"]
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    subscribed = seen[3]
    assert subscribed.data == courses.StudentSubscribed("s1", "c1")
    assert subscribed.aggregate_name == ""
    assert subscribed.aggregate_id == "course:c1"  # its first tag: the partition key
    assert subscribed.version == subscribed.position


async def test_copying_a_store_with_dcb_events_says_it_cannot_yet() -> None:
    from eventsignal import ConfigurationError
    from eventsignal.copying import copy_store
    from eventsignal.testing.expect import raises

    async with MemoryStore() as source, MemoryStore() as target:
        await courses.engine(view(source)).handle(courses.DefineCourse("c1", 2))
        with raises(ConfigurationError) as refused:
            await copy_store(source, target)
        assert "appended by query" in str(refused.value)
