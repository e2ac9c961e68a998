"""NatsStore against JetStream servers of the session's own: compliance on one server and on a
three-server cluster, layout, several clients, durability, snapshots."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import nats
import pytest
from dropping_proxy import DroppingProxy
from hypothesis import given
from hypothesis import strategies as st
from nats_admin import store_and_operator
from nats_servers import NatsCluster, NatsServer, start_cluster
from stalling_proxy import StallingProxy

from eventsignal import (
    AggregateExists,
    ConcurrencyError,
    ConfigurationError,
    EventTooLarge,
    SignalError,
    StoreUnavailable,
)
from eventsignal.stores import EventStore, NatsStore
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.nats.wire import (
    SLOTS,
    decode_token,
    encode_events,
    encode_token,
    first_sequence_after,
    head_of,
    positions_of,
)
from eventsignal.stores.tenancy import tenant_store
from eventsignal.stores.urls import open_store
from eventsignal.testing import EventStoreCompliance
from eventsignal.testing.compliance import make_events

pytestmark = pytest.mark.nats


async def delete_stream(server: str | list[str], stream: str) -> None:
    nc = await nats.connect(server)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


class TestNatsStore(EventStoreCompliance):
    """The contract on one server that fsyncs every write."""

    replicas = 1
    servers: str | list[str] = ""

    @pytest.fixture(autouse=True)
    def on_the_server(self, nats_url: str) -> None:
        self.servers = nats_url

    async def make_store(self) -> EventStore:
        store = NatsStore(self.servers, stream=f"test_{uuid4().hex}", replicas=self.replicas)
        await store.open()
        return store

    async def dispose_store(self, store: EventStore) -> None:
        assert isinstance(store, NatsStore)
        await store.close()
        await delete_stream(self.servers, store.stream)


class TestNatsStoreOnACluster(TestNatsStore):
    """The contract on a stream replicated to three servers, acknowledged by a quorum."""

    replicas = 3

    @pytest.fixture(autouse=True)
    def on_the_server(self, nats_cluster: NatsCluster) -> None:  # the cluster, instead
        self.servers = nats_cluster.urls


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[str]:
    name = f"test_{uuid4().hex}"
    yield name
    await delete_stream(nats_url, name)


@pytest.fixture
async def store(nats_url: str, stream: str) -> AsyncIterator[NatsStore]:
    store = NatsStore(nats_url, stream=stream)
    await store.open()
    yield store
    await store.close()


# Layout


@given(st.text(min_size=1, max_size=200))
def test_tokens_round_trip_and_are_valid_subject_tokens(text: str) -> None:
    token = encode_token(text)
    assert decode_token(token) == text
    assert token
    assert not any(ch in token for ch in ". *>\t\r\n")
    assert len(token) <= 1 + (len(text.encode()) * 8 + 4) // 5


def test_plain_ids_stay_readable() -> None:
    assert encode_token("order-17_b") == "order-17_b"
    assert encode_token("a.b") != "a.b"


def test_positions_are_increasing_across_messages() -> None:
    first, second = positions_of(7, 3), positions_of(8, 1)
    assert list(first) == sorted(first)
    assert first[-1] == head_of(7) < second[0] == head_of(8)
    assert first_sequence_after(0) == 1
    assert first_sequence_after(first[-1]) == 8
    assert first_sequence_after(first[0]) == 7
    assert len(positions_of(1, SLOTS)) == SLOTS


# Against the server


@pytest.mark.parametrize(
    "aggregate_id", ["a.b.c", "with space", "*", ">", "~tilde", "ünïcødé ✓", "x" * 200, "😀" * 200]
)
async def test_any_valid_id_is_stored_and_listed(store: NatsStore, aggregate_id: str) -> None:
    await store.create("dotted.type", aggregate_id)
    await store.append(
        "dotted.type",
        aggregate_id,
        0,
        make_events(aggregate_id, 0, 2, aggregate_name="dotted.type"),
    )
    read = await store.read_aggregate("dotted.type", aggregate_id)
    assert [(e.aggregate_name, e.aggregate_id, e.version) for e in read] == [
        ("dotted.type", aggregate_id, 1),
        ("dotted.type", aggregate_id, 2),
    ]
    listed = await store.aggregates("dotted.type")
    assert [(a.aggregate_id, a.version) for a in listed] == [(aggregate_id, 2)]


async def test_creation_with_first_events_is_one_message(store: NatsStore) -> None:
    positions = await store.create("thing", "born", make_events("born", 0, 3))
    assert [e.position for e in await store.read_aggregate("thing", "born")] == list(positions)
    assert positions[-1] == await store.head_position()
    with pytest.raises(AggregateExists):
        await store.create("thing", "born", make_events("born", 0, 1))
    await store.append("thing", "born", 3, make_events("born", 3, 1))
    listed = await store.aggregates()
    assert [(a.aggregate_id, a.version) for a in listed] == [("born", 4)]


async def test_creating_races_between_stores_have_one_winner(nats_url: str, stream: str) -> None:
    stores = [NatsStore(nats_url, stream=stream) for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        results = await asyncio.gather(
            *(s.create("thing", "contested") for s in stores), return_exceptions=True
        )
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(losers) == 3, results
        assert all(isinstance(r, AggregateExists) for r in losers)
    finally:
        for store in stores:
            await store.close()


async def test_a_stale_writer_conflicts_then_builds_on_the_new_tip(
    nats_url: str, stream: str
) -> None:
    writer, other = NatsStore(nats_url, stream=stream), NatsStore(nats_url, stream=stream)
    await writer.open()
    await other.open()
    try:
        await writer.create("thing", "a")
        await writer.append("thing", "a", 0, make_events("a", 0, 1))
        await other.append("thing", "a", 1, make_events("a", 1, 2))
        # writer still remembers version 1 as the newest: the server refuses its append.
        with pytest.raises(ConcurrencyError) as conflict:
            await writer.append("thing", "a", 1, make_events("a", 1, 1))
        assert conflict.value.expected_version == 1
        tail = await writer.read_aggregate("thing", "a", after_version=1)
        assert [e.version for e in tail] == [2, 3]
        await writer.append("thing", "a", 3, make_events("a", 3, 1))
        assert [e.version for e in await other.read_aggregate("thing", "a")] == [1, 2, 3, 4]
    finally:
        await writer.close()
        await other.close()


async def test_a_writer_far_behind_reads_only_what_it_missed(nats_url: str, stream: str) -> None:
    writer, other = NatsStore(nats_url, stream=stream), NatsStore(nats_url, stream=stream)
    await writer.open()
    await other.open()
    try:
        await writer.create("thing", "a", make_events("a", 0, 2))
        await other.create("thing", "b")
        for version in range(2, 22):
            await other.append("thing", "a", version, make_events("a", version, 1))
            await other.append("thing", "b", version - 2, make_events("b", version - 2, 1))
        with pytest.raises(ConcurrencyError):
            await writer.append("thing", "a", 2, make_events("a", 2, 1))
        tail = await writer.read_aggregate("thing", "a", after_version=2)
        assert [e.version for e in tail] == list(range(3, 23))
        assert {e.aggregate_id for e in tail} == {"a"}
        await writer.append("thing", "a", 22, make_events("a", 22, 1))
    finally:
        await writer.close()
        await other.close()


async def test_long_histories_and_pages_read_through_a_consumer(store: NatsStore) -> None:
    await store.create("thing", "long")
    await store.create("thing", "other")
    version = 0
    for size in (1, 3, 2, 1, 4, 1, 1, 2, 5, 1, 1, 2):
        await store.append("thing", "long", version, make_events("long", version, size))
        await store.append("thing", "other", version, make_events("other", version, size))
        version += size
    read = await store.read_aggregate("thing", "long")
    assert [e.version for e in read] == list(range(1, version + 1))
    assert [e.version for e in await store.read_aggregate("thing", "long", 20)] == list(
        range(21, version + 1)
    )
    everything = await store.read_all(0, limit=1000)
    assert len(everything) == 2 * version
    positions = [e.position for e in everything]
    assert positions == sorted(set(positions))
    assert positions[-1] == await store.head_position()
    middle = await store.read_all(positions[10], limit=7)
    assert [e.position for e in middle] == positions[11:18]


async def test_a_follower_on_another_connection_is_woken(nats_url: str, stream: str) -> None:
    writer, follower = NatsStore(nats_url, stream=stream), NatsStore(nats_url, stream=stream)
    await writer.open()
    await follower.open()
    try:
        await writer.create("thing", "a")
        head = await follower.head_position()
        waiting = asyncio.create_task(follower.wait_for_events(head))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        positions = await writer.append("thing", "a", 0, make_events("a", 0, 2))
        async with asyncio.timeout(5):
            await waiting
        assert [e.position for e in await follower.read_all(head)] == list(positions)
    finally:
        await writer.close()
        await follower.close()


async def test_open_and_close_are_counted(store: NatsStore) -> None:
    await store.open()
    await store.close()
    await store.create("thing", "still-open")
    assert await store.exists("thing", "still-open")


async def test_unreachable_server_is_store_unavailable() -> None:
    store = NatsStore("nats://127.0.0.1:1", stream="nowhere", timeout=0.5)
    with pytest.raises(StoreUnavailable, match="cannot reach NATS"):
        await store.open()
    with pytest.raises(SignalError, match="not open"):  # as every store says it
        await store.create("thing", "a")


def test_stream_names_are_checked() -> None:
    with pytest.raises(ValueError, match="stream name"):
        NatsStore("nats://h:4222", stream="a.b")


def test_a_tenants_view_is_refused_saying_nats_keeps_no_tenants() -> None:
    store = NatsStore("nats://h:4222", stream="shop")
    with pytest.raises(ConfigurationError, match="NatsStore keeps no tenants yet"):
        store.for_tenant("acme")
    with pytest.raises(ConfigurationError, match="NatsStore keeps no tenants"):
        tenant_store(store, "acme")


def test_the_repr_shows_no_credentials() -> None:
    store = open_store("nats://me:s3cret@h1:4222,nats://s3cret@h2:4222?stream=shop")
    assert repr(store) == "<NatsStore 'shop' at nats://me:***@h1:4222, nats://***@h2:4222>"


async def test_an_unreachable_server_is_named_without_its_credentials() -> None:
    store = NatsStore("nats://me:s3cret@127.0.0.1:1", stream="nowhere", timeout=0.5)
    with pytest.raises(StoreUnavailable) as failed:
        await store.open()
    assert "cannot reach NATS at nats://me:***@127.0.0.1:1" in str(failed.value)
    assert "s3cret" not in str(failed.value)


# Events too large to store


def event_of(size: int, version: int = 1) -> StoredEvent:
    return make_events("big", version - 1, 1, name="Uploaded")[0].__replace__(data=b"x" * size)


async def test_an_event_over_the_servers_payload_limit_is_too_large(store: NatsStore) -> None:
    await store.create("thing", "big")
    with pytest.raises(EventTooLarge) as refused:
        await store.append("thing", "big", 0, [*make_events("big", 0, 1), event_of(2**20, 2)])
    error = refused.value
    assert not isinstance(error, StoreUnavailable)  # permanent: no outage, no retry
    assert (error.aggregate_name, error.aggregate_id) == ("thing", "big")
    assert (error.version, error.event_name, error.limit) == (2, "Uploaded", 2**20)
    assert error.size > error.limit
    assert "thing 'big' version 2 event 'Uploaded' is too large" in str(error)
    assert await store.read_aggregate("thing", "big") == []  # nothing stored
    await store.append("thing", "big", 0, make_events("big", 0, 1))


async def test_headers_count_towards_the_payload_limit(store: NatsStore) -> None:
    """A body just under the limit is still too large with its headers.

    The server counts both and closes the connection of a client that sends more, which would
    leave every later command failing; the store refuses the message before sending it.
    """
    await store.create("thing", "big")
    overhead = len(encode_events([event_of(100_000)])) - 100_000
    with pytest.raises(EventTooLarge):
        await store.append("thing", "big", 0, [event_of(2**20 - overhead - 10)])
    await store.append("thing", "big", 0, make_events("big", 0, 1))
    assert [e.version for e in await store.read_aggregate("thing", "big")] == [1]


async def test_an_event_over_the_streams_own_limit_is_too_large(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(
            name=stream, subjects=[f"{stream}.>"], max_msg_size=1000, allow_direct=True
        )
    finally:
        await nc.close()
    store = NatsStore(nats_url, stream=stream)
    await store.open()
    try:
        await store.create("thing", "big")
        with pytest.raises(EventTooLarge) as refused:
            await store.append("thing", "big", 0, [event_of(2000)])
        assert (refused.value.version, refused.value.limit) == (1, 1000)
        assert await store.read_aggregate("thing", "big") == []
    finally:
        await store.close()


# A stalled connection


@pytest.fixture
async def proxy(nats_server: NatsServer) -> AsyncIterator[StallingProxy]:
    async with StallingProxy(nats_server.port) as proxy:
        yield proxy


async def append_until_stored(store: NatsStore, deadline: float) -> None:
    """Append version 1 of thing 'a', retrying while the store is unavailable."""
    clock = asyncio.get_running_loop().time
    while True:
        try:
            await store.append("thing", "a", 0, make_events("a", 0, 1))
            return
        except StoreUnavailable:
            assert clock() < deadline, "the store did not recover by itself"
            await asyncio.sleep(0.05)


async def test_a_stalled_connection_is_dropped_and_replaced(
    proxy: StallingProxy, stream: str
) -> None:
    store = NatsStore(f"nats://127.0.0.1:{proxy.port}", stream=stream, timeout=1.0)
    await store.open()
    clock = asyncio.get_running_loop().time
    try:
        await store.create("thing", "a")
        proxy.stall()
        started = clock()
        with pytest.raises(StoreUnavailable, match="may or may not have been stored"):
            await store.append("thing", "a", 0, make_events("a", 0, 1))
        assert clock() - started < 1.5  # the store's timeout, give or take scheduling
        proxy.resume()  # a new connection would work; the stalled one never will again
        # Two unanswered pings, one every timeout / 2, and the store connects anew.
        await append_until_stored(store, deadline=started + 6)
        assert proxy.links >= 2
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1]
    finally:
        await store.close()


async def test_writes_without_a_connection_fail_at_once_and_are_never_sent(
    proxy: StallingProxy, stream: str
) -> None:
    store = NatsStore(f"nats://127.0.0.1:{proxy.port}", stream=stream, timeout=1.0)
    await store.open()
    clock = asyncio.get_running_loop().time
    try:
        await store.create("thing", "a")
        proxy.stall()  # new connections are held silent too: the store is left without one
        deadline = clock() + 6
        refused = 0
        while refused < 3:
            started = clock()
            with pytest.raises(StoreUnavailable) as failed:
                await store.append("thing", "a", 0, make_events("a", 0, 1))
            if "nothing was sent" in str(failed.value):
                assert clock() - started < 0.25
                refused += 1
            assert clock() < deadline, "the stalled connection was never dropped"
        proxy.resume()
        await append_until_stored(store, deadline=clock() + 6)
        # None of the refused writes was held back and stored once connected again.
        assert [e.version for e in await store.read_aggregate("thing", "a")] == [1]
    finally:
        await store.close()


def batch_id(headers: bytes) -> str:
    """The ``Nats-Batch-Id`` among a published message's headers."""
    found = re.search(rb"\r\nNats-Batch-Id: *([^\r]+)\r\n", headers)
    assert found is not None, headers
    return found.group(1).decode()


@pytest.fixture
async def dropping_proxy(nats_server: NatsServer) -> AsyncIterator[DroppingProxy]:
    async with DroppingProxy(nats_server.port) as proxy:
        yield proxy


@pytest.mark.parametrize("lost", [1, 2], ids=["first message lost", "middle message lost"])
async def test_a_batch_missing_a_message_at_the_server_is_sent_again_and_stored_once(
    dropping_proxy: DroppingProxy, stream: str, lost: int
) -> None:
    """JetStream refuses the commit of an atomic batch it did not receive whole (10176), storing
    none of it: the append is sent again under a new batch id, and its events are stored once."""
    proxy = dropping_proxy
    store = NatsStore(f"nats://127.0.0.1:{proxy.port}", stream=stream, timeout=2.0)
    await store.open()
    try:
        await store.create("thing", "a", make_events("a", 0, 1))
        events = make_events("a", 1, 3)
        proxy.drop_next(f"Nats-Batch-Sequence: {lost}")
        positions = await store.append("thing", "a", 1, events)
        assert len(proxy.dropped) == 1, "the append was not sent as a batch"
        first_try = batch_id(proxy.dropped[0])
        tries = {batch_id(headers) for headers in proxy.forwarded if b"Nats-Batch-Id" in headers}
        # The first try's other messages went on, then the whole batch under a new id.
        assert first_try in tries
        assert len(tries) == 2
        stored = await store.read_aggregate("thing", "a")
        assert [e.version for e in stored] == [1, 2, 3, 4]
        assert [e.id for e in stored[1:]] == [e.id for e in events]
        assert [e.position for e in stored[1:]] == list(positions)
        assert [e.id for e in await store.read_all(0)] == [e.id for e in stored]
        await store.append("thing", "a", 4, make_events("a", 4, 1))
        assert len(await store.read_aggregate("thing", "a")) == 5
    finally:
        await store.close()


async def test_reads_on_a_replicated_stream_see_acknowledged_writes(
    nats_cluster: NatsCluster,
) -> None:
    """Any replica may answer a direct get; on a replicated stream the leader answers reads."""
    store = NatsStore(nats_cluster.urls, stream=f"test_{uuid4().hex}", replicas=3)
    await store.open()
    try:
        for version in range(3):
            if version == 0:
                await store.create("thing", "a", make_events("a", 0, 1))
            else:
                await store.append("thing", "a", version, make_events("a", version, 1))
            stored = await store.read_aggregate("thing", "a")
            assert [e.version for e in stored] == list(range(1, version + 2))
        assert [e.version for e in await store.read_all(0)] == [1, 2, 3]
    finally:
        await store.close()
        await delete_stream(nats_cluster.urls, store.stream)


async def test_a_read_while_the_stream_changes_leader_is_asked_again(
    nats_cluster: NatsCluster,
) -> None:
    """A read sent while a replicated stream elects a new leader goes unanswered (nobody holds the
    stream for that moment): it is asked again, and answered within the store's timeout."""
    store = NatsStore(nats_cluster.urls, stream=f"test_{uuid4().hex}", replicas=3, timeout=4.0)
    await store.open()
    admin = await nats.connect(nats_cluster.urls)
    try:
        await store.create("thing", "a", make_events("a", 0, 2))
        for _ in range(3):
            stepped = await admin.request(
                f"$JS.API.STREAM.LEADER.STEPDOWN.{store.stream}", b"", timeout=5
            )
            assert b'"success":true' in stepped.data, stepped.data
            assert [e.version for e in await store.read_aggregate("thing", "a")] == [1, 2]
    finally:
        await admin.close()
        await store.close()
        await delete_stream(nats_cluster.urls, store.stream)


async def test_a_read_while_the_stream_has_no_leader_waits_for_one(tmp_path: Path) -> None:
    """With two of three servers gone, a replicated stream has no leader, and the server left
    answers reads with "temporarily unavailable": a read asked then waits, within the store's
    timeout, until the servers are back and a leader answers."""
    cluster = start_cluster(tmp_path)
    try:
        writer = NatsStore(cluster.urls, stream=f"test_{uuid4().hex}", replicas=3)
        async with writer:
            await writer.create("thing", "a", make_events("a", 0, 2))
        admin = await nats.connect(cluster.urls)
        try:
            placed = (await admin.jetstream().stream_info(writer.stream)).cluster
        finally:
            await admin.close()
        assert placed is not None
        left = next(s for s in cluster.servers if s.name != placed.leader)
        gone = [s for s in cluster.servers if s is not left]
        async with NatsStore(left.url, stream=writer.stream, replicas=3, timeout=30.0) as reader:
            read: asyncio.Task[Sequence[StoredEvent]] | None = None
            try:
                for server in gone:
                    server.pause()
                await _until_no_leader(left, writer.stream)
                read = asyncio.create_task(reader.read_aggregate("thing", "a"))
                await asyncio.sleep(1.0)
                assert not read.done(), read.exception()  # waits, not failed at the first 503
            except BaseException:
                if read is not None:
                    read.cancel()
                raise
            finally:
                for server in gone:
                    server.resume()
            assert [e.version for e in await read] == [1, 2]
    finally:
        cluster.stop()


async def _until_no_leader(server: NatsServer, stream: str) -> None:
    """Until ``server`` answers a leader get on ``stream`` with "no leader" (err 10008)."""
    client = await nats.connect(server.url)
    try:
        ask = json.dumps({"last_by_subj": f"{stream}.>"}).encode()
        for _ in range(60):
            try:
                reply = await client.request(f"$JS.API.STREAM.MSG.GET.{stream}", ask, timeout=2)
            except nats.errors.TimeoutError:
                continue
            if json.loads(reply.data).get("error", {}).get("err_code") == 10008:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{stream} kept a leader with two of its servers gone")
    finally:
        await client.close()


async def test_a_subject_key_read_while_its_bucket_changes_leader_is_asked_again(
    nats_cluster: NatsCluster,
) -> None:
    """Subject keys (privacy) are read as events are: asked again while their bucket elects a
    new leader, so a command that needs a key does not fail over the moment."""
    async with store_and_operator(nats_cluster.urls, replicas=3) as (store, admin):
        digest, key = "d" * 64, bytes(range(32))
        assert await store.add_subject_keys({digest: key}, [(digest, "thing", "a")]) == {
            digest: key
        }
        stepdown = f"$JS.API.STREAM.LEADER.STEPDOWN.KV_{store.stream}_subject_keys"
        for _ in range(3):
            stepped = await admin.request(stepdown, b"", timeout=5)
            assert b'"success":true' in stepped.data, stepped.data
            assert await store.load_subject_keys([digest]) == {digest: key}
            stepped = await admin.request(stepdown, b"", timeout=5)
            assert b'"success":true' in stepped.data, stepped.data
            assert await store.subject_uses(digest) == [("thing", "a")]


async def test_subject_keys_are_written_over_a_dropped_key_and_a_first_forgetting_stays(
    nats_url: str,
) -> None:
    """A dropped key leaves a purge marker: a new key for the subject is written over it. A
    forgetting's first moment stays when the subject is forgotten again."""
    async with store_and_operator(nats_url) as (store, _):
        digest, first, second = "e" * 64, bytes(range(32)), bytes(range(1, 33))
        assert await store.add_subject_keys({digest: first}, []) == {digest: first}
        await store.drop_subject_key(digest)
        assert await store.load_subject_keys([digest]) == {}
        assert await store.add_subject_keys({digest: second}, []) == {digest: second}
        once = await store.forget_subject_key(digest, datetime(2026, 1, 1, tzinfo=UTC))
        again = await store.forget_subject_key(digest, datetime(2026, 2, 1, tzinfo=UTC))
        assert once.destroyed
        assert not again.destroyed
        assert once.forgotten_at == again.forgotten_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert await store.load_subject_keys([digest]) == {digest: None}


async def test_a_subject_key_digest_that_cannot_be_a_key_is_refused_not_matched(
    nats_url: str,
) -> None:
    """A digest goes into a subject, where a wildcard would select another subject's key."""
    async with store_and_operator(nats_url) as (store, _):
        digest, key = "d" * 64, bytes(range(32))
        await store.add_subject_keys({digest: key}, [(digest, "thing", "a")])
        for wildcard in ("*", ">", "d d"):
            with pytest.raises(ConfigurationError, match="cannot be a key"):
                await store.load_subject_keys([wildcard])
            with pytest.raises(ConfigurationError, match="cannot be a key"):
                await store.subject_uses(wildcard)
        assert await store.load_subject_keys([digest]) == {digest: key}
