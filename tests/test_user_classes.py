"""State, commands and events as dataclasses, msgspec Structs or pydantic models."""

from __future__ import annotations

from typing import Any

import msgspec
import pydantic
import pytest

from eventsignal import AggregateConfig, Event, EventSerializationError, Signal
from eventsignal.stores import MemoryStore
from eventsignal.stores.rewriting import PayloadChange


class Total(msgspec.Struct, frozen=True):
    amount: int = 0
    tags: tuple[str, ...] = ()


class Add(msgspec.Struct, frozen=True):
    amount: int
    tag: str


class Added(msgspec.Struct, frozen=True):
    amount: int
    tag: str


class Tagged(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    tag: str
    weight: float


def handle(command: Add, state: Total) -> list[Any]:
    return [Added(command.amount, command.tag), Tagged(tag=command.tag, weight=0.5)]


def apply(state: Total, event: Event[Any]) -> Total:
    if isinstance(event.data, Added):
        return Total(state.amount + event.data.amount, state.tags)
    assert isinstance(event.data, Tagged)
    return Total(state.amount, (*state.tags, event.data.tag))


CONFIG = AggregateConfig(
    name="tally",
    initial_state=Total(),
    command_handler=handle,
    event_handler=apply,
    events=[Added, Tagged],
)


async def test_msgspec_and_pydantic_round_trip_through_the_store() -> None:
    store = MemoryStore()
    async with Signal(CONFIG, store=store) as signal:
        await signal.create("t")
        live = await signal.handle_command("t", Add(3, "x"))
    async with Signal(CONFIG, store=store) as again:
        rebuilt = (await again.aggregate("t")).state
    assert live == rebuilt == Total(3, ("x",))


async def test_events_can_be_registered_under_stable_names() -> None:
    renamed = AggregateConfig(
        name="tally",
        initial_state=Total(),
        command_handler=handle,
        event_handler=apply,
        events={"tally.added": Added, "tally.tagged": Tagged},
    )
    store = MemoryStore()
    async with Signal(renamed, store=store) as signal:
        await signal.create("t")
        await signal.handle_command("t", Add(1, "y"))
    assert [e.name for e in await store.read_aggregate("tally", "t")] == [
        "tally.added",
        "tally.tagged",
    ]


async def test_undecodable_stored_event_names_aggregate_version_and_event() -> None:
    store = MemoryStore()
    async with Signal(CONFIG, store=store) as signal:
        await signal.create("t")
        await signal.handle_command("t", Add(1, "y"))
    # Corrupt the second stored event the way a broken writer or a bad migration would.
    second = (await store.read_aggregate("tally", "t"))[1]
    corrupt_payload = PayloadChange(second.position, second.data, b'{"tag": 5}')
    assert await store.rewrite_payloads([corrupt_payload])
    async with Signal(CONFIG, store=store) as reader:
        with pytest.raises(EventSerializationError) as corrupt:
            await reader.aggregate("t")
        exc = corrupt.value
        assert (exc.aggregate_id, exc.version, exc.event_name) == ("t", 2, "Tagged")
        assert "'t' version 2 event 'Tagged'" in str(exc)
        await reader.create("other")  # the Signal keeps serving
        assert reader.pool_size == 1


class Scrambler:
    """A reversible transcoder standing in for encryption."""

    def encode(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    def decode(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)


async def test_transcoder_wraps_stored_bytes() -> None:
    store = MemoryStore()
    async with Signal(CONFIG, store=store, transcoder=Scrambler()) as signal:
        await signal.create("t")
        await signal.handle_command("t", Add(2, "z"))
    raw = (await store.read_aggregate("tally", "t"))[0].data
    assert b"amount" not in raw
    async with Signal(CONFIG, store=store, transcoder=Scrambler()) as again:
        assert (await again.aggregate("t")).state == Total(2, ("z",))
