"""What a NatsStore puts on the wire: one message per event with CloudEvents headers, each
command one atomic batch, the layout recorded in the stream; streams of one message per command
(an older server's, or an earlier version's) read and copied; streams that would delete events on
their own refused; settings learnt again when a server comes back changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from uuid import uuid4

import nats
import nats.js.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.api import DiscardPolicy, StreamConfig
from nats_servers import NatsCluster, NatsServer, server_binary, start_server

from eventsignal import (
    AggregateExists,
    ConcurrencyError,
    ConfigurationError,
    StoreUnavailable,
)
from eventsignal.copying import copy_store, verify_copy
from eventsignal.stores import NatsStore
from eventsignal.stores.idempotency import CommandKey, KeyRetention
from eventsignal.stores.nats.wire import (
    SLOTS,
    decode_events,
    event_messages,
    header_text,
    header_value,
    subject_of,
)
from eventsignal.stores.urls import open_store
from eventsignal.testing.compliance import make_events

pytestmark = pytest.mark.nats

DEBIAN_SERVER = "nats://127.0.0.1:4222"  # the machine's 2.9: no atomic batches, no metadata


@pytest.fixture
async def streams() -> AsyncIterator[list[tuple[str | list[str], str]]]:
    """(servers, stream) pairs to delete once the test is done."""
    made: list[tuple[str | list[str], str]] = []
    yield made
    for servers, stream in made:
        nc = await nats.connect(servers)
        try:
            await nc.jetstream().delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()


def fresh(streams: list[tuple[str | list[str], str]], servers: str | list[str]) -> str:
    name = f"test_{uuid4().hex}"
    streams.append((servers, name))
    return name


async def raw_messages(servers: str | list[str], stream: str) -> list[Any]:
    """Every message of the stream as JetStream holds it, in order."""
    nc = await nats.connect(servers)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        return [await js.get_msg(stream, seq, direct=True) for seq in range(1, last + 1)]
    finally:
        await nc.close()


async def stream_config(servers: str | list[str], stream: str) -> StreamConfig:
    nc = await nats.connect(servers)
    try:
        config = (await nc.jetstream().stream_info(stream)).config
        assert config is not None
        return config
    finally:
        await nc.close()


def cloud_event(message: Any) -> dict[str, str]:
    """The CloudEvents attributes of a message, decoded as a tool reading the stream would."""
    headers = message.headers or {}
    return {k[3:]: unquote(v) for k, v in headers.items() if k.startswith("ce-")}


# One message per event

text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)


@given(text)
def test_header_values_are_plain_ascii_and_read_back(value: str) -> None:
    encoded = header_text(value)
    assert encoded.isascii()
    assert encoded.isprintable()
    assert " " not in encoded
    assert header_value(encoded) == value


@given(
    aggregate_id=text.filter(str.isprintable),
    names=st.lists(text, min_size=1, max_size=4),
    metadata=st.dictionaries(text.filter(lambda t: "\x00" not in t), text, max_size=3),
)
def test_events_read_back_from_their_messages_as_written(
    aggregate_id: str, names: list[str], metadata: dict[str, str]
) -> None:
    events = [
        e.__replace__(name=name, metadata=metadata)
        for e, name in zip(
            make_events(aggregate_id, 4, len(names), aggregate_name="t.y"), names, strict=True
        )
    ]
    messages = event_messages("t.y", events, "2026-01-01T00:00:00+00:00", 9, 12)
    subject = subject_of("s", "t.y", aggregate_id)
    read = [
        event
        for sequence, (headers, body) in enumerate(messages, 13)
        for event in decode_events(subject, sequence, headers, body)
    ]
    assert [e.__replace__(position=0) for e in read] == events
    assert [e.position for e in read] == [
        seq * SLOTS + SLOTS - 1 for seq in range(13, 13 + len(names))
    ]


async def test_each_event_is_one_message_with_cloudevents_headers(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    aggregate_id = "order 17/ü"  # a space and non-ASCII: percent-encoded in ce-subject
    async with NatsStore(nats_url, stream=stream) as store:
        created = make_events(aggregate_id, 0, 2, aggregate_name="order")
        appended = make_events(aggregate_id, 2, 3, aggregate_name="order", name="Shipped 🚚")
        await store.create("order", aggregate_id, created)
        positions = await store.append("order", aggregate_id, 2, appended)
        read = await store.read_aggregate("order", aggregate_id)
    written = [*created, *appended]
    assert [(e.id, e.name, e.data, e.timestamp, dict(e.metadata)) for e in read] == [
        (e.id, e.name, e.data, e.timestamp, dict(e.metadata)) for e in written
    ]
    assert list(positions) == [e.position for e in read[2:]]

    messages = await raw_messages(nats_url, stream)
    assert len(messages) == 5  # no marker: the aggregate was created with its first events
    for message, event in zip(messages, written, strict=True):
        assert message.data == event.data  # the body is the payload, nothing around it
        attributes = cloud_event(message)
        assert attributes == {
            "specversion": "1.0",
            "id": str(event.id),
            "source": "/order",
            "type": f"order.{event.name}",
            "subject": aggregate_id,
            "time": attributes["time"],
            "aggregateversion": str(event.version),
        }
        assert datetime.fromisoformat(attributes["time"]) == event.timestamp
        assert all(value.isascii() for value in message.headers.values())
    # Metadata rides along as JSON; the server keeps each command's expected sequence on its
    # first message only, and the batch's messages are consecutive.
    assert json.loads(messages[0].headers["Es-Metadata"]) == dict(written[0].metadata)
    expected = [m.headers.get("Nats-Expected-Last-Subject-Sequence") for m in messages]
    assert expected == ["0", None, "2", None, None]


async def test_an_aggregate_created_without_events_gets_a_marker(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a")
        await store.append("thing", "a", 0, make_events("a", 0, 1))
        assert [(a.aggregate_id, a.version) for a in await store.aggregates()] == [("a", 1)]
        [event] = await store.read_all(0)
    marker, stored = await raw_messages(nats_url, stream)
    assert "ce-id" not in marker.headers
    assert not marker.data
    assert cloud_event(stored)["id"] == str(event.id)
    assert event.position == 2 * SLOTS + SLOTS - 1


async def test_the_layout_is_recorded_in_the_streams_metadata(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    async with NatsStore(nats_url, stream=stream):
        pass
    config = await stream_config(nats_url, stream)
    assert (config.metadata or {})["eventsignal.layout"] == "event-per-message"
    assert config.allow_atomic


@pytest.mark.parametrize("on_a_cluster", [False, True])
async def test_racing_commands_store_one_batch_whole_and_refuse_the_other(
    request: pytest.FixtureRequest, streams: list[tuple[str | list[str], str]], on_a_cluster: bool
) -> None:
    """Two store objects (two connections) append three events each at the same version."""
    servers: str | list[str]
    if on_a_cluster:
        cluster: NatsCluster = request.getfixturevalue("nats_cluster")
        servers, replicas = cluster.urls, 3
    else:
        servers, replicas = request.getfixturevalue("nats_url"), 1
    stream = fresh(streams, servers)
    stores = [NatsStore(servers, stream=stream, replicas=replicas) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        await stores[0].create("thing", "a", make_events("a", 0, 1))
        await stores[1].read_aggregate("thing", "a")  # both know version 1 as the newest
        for round_ in range(5):
            version = 1 + 3 * round_
            batches = [make_events("a", version, 3) for _ in stores]
            results = await asyncio.gather(
                *(s.append("thing", "a", version, b) for s, b in zip(stores, batches, strict=True)),
                return_exceptions=True,
            )
            winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
            assert len(winners) == 1, results
            [loser] = [r for r in results if isinstance(r, BaseException)]
            assert isinstance(loser, ConcurrencyError), loser
            stored = await stores[1 - winners[0]].read_aggregate("thing", "a", version)
            assert [e.id for e in stored] == [e.id for e in batches[winners[0]]]
        everything = await stores[0].read_all(0)
        assert [e.version for e in everything] == list(range(1, 17))
        assert len(await raw_messages(servers, stream)) == 16  # the losers stored nothing
    finally:
        for store in stores:
            await store.close()


@pytest.mark.parametrize("on_a_cluster", [False, True])
async def test_concurrent_batches_are_each_stored_at_consecutive_sequences(
    request: pytest.FixtureRequest, streams: list[tuple[str | list[str], str]], on_a_cluster: bool
) -> None:
    """What reading relies on: a batch's later events follow their predecessor directly."""
    servers: str | list[str]
    if on_a_cluster:
        cluster: NatsCluster = request.getfixturevalue("nats_cluster")
        servers, replicas = cluster.urls, 3
    else:
        servers, replicas = request.getfixturevalue("nats_url"), 1
    stream = fresh(streams, servers)
    async with NatsStore(servers, stream=stream, replicas=replicas) as store:

        async def writer(aggregate_id: str) -> None:
            await store.create("thing", aggregate_id, make_events(aggregate_id, 0, 2))
            for version in range(2, 14, 3):
                await store.append(
                    "thing", aggregate_id, version, make_events(aggregate_id, version, 3)
                )

        ids = [f"w{n}" for n in range(16)]
        await asyncio.gather(*(writer(aggregate_id) for aggregate_id in ids))
        for aggregate_id in ids:  # from every version: the walk back and the consumer alike
            for after in range(14):
                tail = await store.read_aggregate("thing", aggregate_id, after)
                assert [e.version for e in tail] == list(range(after + 1, 15))
                assert {e.aggregate_id for e in tail} == {aggregate_id}
    batches: dict[str, list[int]] = {}
    for message in await raw_messages(servers, stream):
        batches.setdefault(message.headers["Nats-Batch-Id"], []).append(message.seq)
    assert len(batches) == 16 * 5
    for sequences in batches.values():
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))


async def test_racing_creators_with_events_have_one_winner(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    stores = [NatsStore(nats_url, stream=stream) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        results = await asyncio.gather(
            *(s.create("thing", "x", make_events("x", 0, 2)) for s in stores),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == [
            AggregateExists.__name__,
            AggregateExists.__name__,
            "range",
        ]
        assert len(await raw_messages(nats_url, stream)) == 2
    finally:
        for store in stores:
            await store.close()


async def test_a_key_rides_on_its_commands_batch_and_retention_counts_commands(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    keep_two = KeyRetention(keep=2, max_age=None)
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create_keyed(
            "thing",
            "a",
            make_events("a", 0, 3),
            CommandKey(key="k0", digest="d", recorded_at=datetime.now(UTC)),
            keep_two,
        )
        for version, name in ((3, "k1"), (6, "k2"), (9, "k3")):
            key = CommandKey(key=name, digest="d", recorded_at=datetime.now(UTC))
            await store.append_keyed("thing", "a", version, make_events("a", version, 3), key)
        found = await store.find_command("thing", "a", "k1")
        assert found is not None
        assert found.version == 6  # the aggregate's version after the command
        kept = [
            k
            for k in ("k0", "k1", "k2", "k3")
            if await store.find_command("thing", "a", k, keep_two)
        ]
        assert kept == ["k2", "k3"]
    messages = await raw_messages(nats_url, stream)
    assert len(messages) == 12
    assert [m.seq for m in messages if "Es-Key" in m.headers] == [3, 6, 9, 12]


async def test_an_event_published_by_other_code_is_handed_back_flagged(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a", make_events("a", 0, 1))
        await store.create("thing", "b", make_events("b", 0, 1))  # between a's two messages
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().publish(
                f"{stream}.thing.a",
                b"{}",
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": "not-a-uuid",
                    "ce-aggregateversion": "2",
                    "Es-Created": "2026-01-01T00:00:00+00:00",
                },
            )
        finally:
            await nc.close()
        first, flagged = await store.read_aggregate("thing", "a")
        # Without the link a command's first message carries, the message before it on the
        # stream is b's: the tail is read through a consumer instead, and holds a's alone.
        assert await store.read_aggregate("thing", "a", 1) == [flagged]
    assert first.defect is None
    assert (flagged.version, flagged.data) == (2, b"{}")
    assert "cannot be read" in str(flagged.defect)


# Streams of one message per command


async def test_a_stream_of_one_message_per_command_is_kept_so_and_copies_to_one_per_event(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    old = fresh(streams, nats_url)
    # The stream as earlier versions of the store created it: no metadata, no atomic batches.
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(
            name=old, subjects=[f"{old}.>"], allow_direct=True, deny_delete=True
        )
    finally:
        await nc.close()
    async with NatsStore(nats_url, stream=old) as store:
        await store.create("thing", "a", make_events("a", 0, 2))
        await store.create("thing", "b")
        await store.append("thing", "a", 2, make_events("a", 2, 3))
        await store.append("thing", "b", 0, make_events("b", 0, 1))
        written = await store.read_all(0)
    assert [(e.aggregate_id, e.version) for e in written] == [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("a", 4),
        ("a", 5),
        ("b", 1),
    ]
    messages = await raw_messages(nats_url, old)
    assert [m.headers["Es-Count"] for m in messages] == ["2", "0", "3", "1"]  # per command
    assert not any("ce-id" in m.headers for m in messages)

    new = fresh(streams, nats_url)
    async with NatsStore(nats_url, stream=old) as source, NatsStore(nats_url, stream=new) as target:
        await copy_store(source, target)
        assert (await verify_copy(source, target)).ok
        copied = await target.read_all(0)
    assert [(e.id, e.version, e.data) for e in copied] == [
        (e.id, e.version, e.data) for e in written
    ]
    moved = await raw_messages(nats_url, new)
    assert len(moved) == 6  # each aggregate created with its first events: no marker
    assert all("ce-id" in m.headers for m in moved)


async def test_the_older_server_keeps_one_message_per_command(
    streams: list[tuple[str | list[str], str]],
) -> None:
    stream = fresh(streams, DEBIAN_SERVER)
    async with NatsStore(DEBIAN_SERVER, stream=stream, durability="ignore") as store:
        await store.create("thing", "a", make_events("a", 0, 2))
        await store.append("thing", "a", 2, make_events("a", 2, 3))
        with pytest.raises(ConcurrencyError):
            await store.append("thing", "a", 2, make_events("a", 2, 1))
        read = await store.read_aggregate("thing", "a")
    assert [e.version for e in read] == [1, 2, 3, 4, 5]
    assert [m.headers["Es-Count"] for m in await raw_messages(DEBIAN_SERVER, stream)] == ["2", "3"]
    assert not (await stream_config(DEBIAN_SERVER, stream)).metadata


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"metadata": {"eventsignal.layout": "event-per-message"}}, "set allow_atomic"),
        ({"metadata": {"eventsignal.layout": "event-per-page"}}, "written by a newer one"),
    ],
)
async def test_a_recorded_layout_the_stream_cannot_hold_is_refused(
    nats_url: str, streams: list[tuple[str | list[str], str]], settings: dict[str, Any], named: str
) -> None:
    stream = fresh(streams, nats_url)
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(
            name=stream, subjects=[f"{stream}.>"], allow_direct=True, **settings
        )
    finally:
        await nc.close()
    store = NatsStore(nats_url, stream=stream)
    with pytest.raises(ConfigurationError, match=named) as refused:
        await store.open()
    assert f"stream {stream!r}" in str(refused.value)
    assert not store.is_open


# Streams that would delete events on their own


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"max_msgs": 1000}, "max_msgs=1000 with discard=old"),
        ({"max_bytes": 1 << 20}, "max_bytes=1048576 with discard=old"),
        ({"max_age": 3600.0}, "max_age=3600s"),
        (
            {"max_msgs_per_subject": 10, "discard": DiscardPolicy.NEW},
            "max_msgs_per_subject=10 without discard_new_per_subject",
        ),
    ],
)
async def test_a_stream_that_would_drop_acknowledged_events_is_refused(
    nats_url: str, streams: list[tuple[str | list[str], str]], limits: dict[str, Any], named: str
) -> None:
    stream = fresh(streams, nats_url)
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(
            name=stream, subjects=[f"{stream}.>"], allow_direct=True, **limits
        )
    finally:
        await nc.close()
    store = NatsStore(nats_url, stream=stream)
    with pytest.raises(ConfigurationError) as refused:
        await store.open()
    assert f"stream {stream!r}" in str(refused.value)
    assert named in str(refused.value)
    assert not store.is_open


async def test_limits_that_refuse_writes_instead_are_accepted(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(
            name=stream,
            subjects=[f"{stream}.>"],
            allow_direct=True,
            discard=DiscardPolicy.NEW,
            max_msgs=3,
            max_msgs_per_subject=10,
            discard_new_per_subject=True,
        )
    finally:
        await nc.close()
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a", make_events("a", 0, 1))
        await store.append("thing", "a", 1, make_events("a", 1, 1))
        await store.append("thing", "a", 2, make_events("a", 2, 1))
        with pytest.raises(StoreUnavailable):  # full: refused, and nothing deleted
            await store.append("thing", "a", 3, make_events("a", 3, 1))
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2, 3]


# A server that comes back with other settings


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = start_server(tmp_path / "own", sync_always=True)
    try:
        yield server
    finally:
        server.stop()


def restart(server: NatsServer, *, sync_always: bool) -> None:
    """Stop the server and start it again on the same ports and files, fsync set anew."""
    server.stop()
    config = server.directory / "server.conf"
    sync = ", sync_interval: always" if sync_always else ""
    config.write_text(
        re.sub(r"(store_dir: \"[^\"]*\")[^}]*\}", rf"\1{sync} }}", config.read_text())
    )
    with (server.directory / "server.log").open("ab") as log:
        server.process = subprocess.Popen(
            [str(server_binary()), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            if server.get("healthz?js-enabled-only=true").get("status") == "ok":
                break
        except OSError:
            pass
        assert server.process.poll() is None, server.log()[-2000:]
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert server.get("varz")["jetstream"]["config"].get("sync_always", False) == sync_always


async def write_until(store: NatsStore, version: int, deadline: float) -> BaseException | None:
    """Append one event at ``version``, waiting out the reconnection; the permanent error if
    the store refuses it, ``None`` once stored."""
    while True:
        try:
            await store.append("thing", "a", version, make_events("a", version, 1))
            return None
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not reconnect"
            await asyncio.sleep(0.1)
        except ConfigurationError as exc:
            return exc


async def test_settings_are_learnt_again_after_the_server_restarts(
    own_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "eventsignal.stores.nats")
    stream = f"test_{uuid4().hex}"
    strict = NatsStore(
        own_server.url, stream=stream, durability="require", monitor=own_server.monitor
    )
    lenient = NatsStore(own_server.url, stream=stream, monitor=own_server.monitor)
    async with strict, lenient:
        await strict.create("thing", "a")
        assert await write_until(strict, 0, time.monotonic() + 10) is None
        assert not caplog.records

        restart(own_server, sync_always=False)  # the same URL, no longer fsyncing each write
        refused = await write_until(strict, 1, time.monotonic() + 10)
        assert isinstance(refused, ConfigurationError)
        assert "sync_interval: always" in str(refused)
        assert [e.version for e in await strict.read_aggregate("thing", "a")] == [1]  # not sent
        assert await write_until(lenient, 1, time.monotonic() + 10) is None  # warned, stored
        assert await write_until(lenient, 2, time.monotonic() + 10) is None
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1
        assert "fsync only every sync_interval" in warnings[0]

        restart(own_server, sync_always=True)
        assert await write_until(strict, 3, time.monotonic() + 10) is None
        assert [e.version for e in await strict.read_aggregate("thing", "a")] == [1, 2, 3, 4]


async def test_a_store_may_create_its_stream_with_one_message_per_command(
    nats_url: str, streams: list[tuple[str | list[str], str]]
) -> None:
    stream = fresh(streams, nats_url)
    async with NatsStore(nats_url, stream=stream, layout="command-per-message") as store:
        await store.create("thing", "a", make_events("a", 0, 2))
        await store.append("thing", "a", 2, make_events("a", 2, 3))
    config = await stream_config(nats_url, stream)
    assert (config.metadata or {})["eventsignal.layout"] == "command-per-message"
    # Whatever a later store asks for, the stream keeps the layout it records.
    async with NatsStore(nats_url, stream=stream, layout="event-per-message") as store:
        await store.append("thing", "a", 5, make_events("a", 5, 2))
        assert [e.version for e in await store.read_aggregate("thing", "a")] == list(range(1, 8))
    assert [m.headers["Es-Count"] for m in await raw_messages(nats_url, stream)] == ["2", "3", "2"]


async def test_one_message_per_event_is_refused_where_the_server_cannot_batch() -> None:
    stream = f"test_{uuid4().hex}"
    store = NatsStore(DEBIAN_SERVER, stream=stream, layout="event-per-message")
    with pytest.raises(ConfigurationError, match=r"needs 2\.12 or later") as refused:
        await store.open()
    assert stream in str(refused.value)
    assert not store.is_open
    with pytest.raises(ConfigurationError, match="layout must be one of"):
        NatsStore(DEBIAN_SERVER, layout="sideways")  # type: ignore[arg-type]
    url = open_store(f"{DEBIAN_SERVER}?stream=s&layout=command-per-message")
    assert isinstance(url, NatsStore)
    assert url.layout == "command-per-message"
