"""Paged reads of a NatsStore's log: a page that follows the previous one continues on the same
pull consumer, and still sees every event stored before it was asked for, however the pages
and the writes interleave, on one server and on a replicated stream."""

from __future__ import annotations

import asyncio
import random
from uuid import uuid4

import msgspec
import nats
import pytest
from nats_servers import NatsCluster, NatsServer
from stalling_proxy import StallingProxy

from eventsignal import StoreUnavailable
from eventsignal.stores import NatsStore
from eventsignal.stores.base import StoredEvent
from eventsignal.testing.compliance import make_events

pytestmark = pytest.mark.nats


async def consumers(servers: str | list[str], stream: str) -> int:
    nc = await nats.connect(servers)
    try:
        return (await nc.jetstream().stream_info(stream)).state.consumer_count
    finally:
        await nc.close()


async def write(
    store: NatsStore, rng: random.Random, versions: dict[str, int], commands: int
) -> None:
    """``commands`` commands of one to five events each, on a few aggregates."""
    for _ in range(commands):
        aggregate_id = f"a{rng.randrange(4)}"
        size = rng.randint(1, 5)
        if aggregate_id not in versions:
            await store.create("thing", aggregate_id)
            versions[aggregate_id] = 0
        version = versions[aggregate_id]
        await store.append("thing", aggregate_id, version, make_events(aggregate_id, version, size))
        versions[aggregate_id] = version + size


def key(event: StoredEvent) -> tuple[str, int, int]:
    return event.aggregate_id, event.version, event.position


@pytest.mark.parametrize("seed", range(4))
async def test_pages_between_writes_see_everything_stored_before_them(
    nats_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    stream = f"test_{uuid4().hex}"
    writer, reader = NatsStore(nats_url, stream=stream), NatsStore(nats_url, stream=stream)
    async with writer, reader:
        versions: dict[str, int] = {}
        await write(writer, rng, versions, 20)
        pages: list[StoredEvent] = []
        after = 0
        for _ in range(40):
            if rng.random() < 0.3:
                await write(writer, rng, versions, rng.randint(1, 15))
            limit = rng.choice([1, 3, 7, 50, 1000])
            page = await reader.read_all(after, limit)
            assert len(page) <= limit
            if len(page) < limit:  # a short page ends at the head as it was when asked
                assert (page[-1].position if page else after) == await writer.head_position()
            pages.extend(page)
            if page:
                after = page[-1].position
        pages.extend(await reader.read_all(after, 100_000))
        # The same log read in one go by a store that never paged.
        async with NatsStore(nats_url, stream=stream) as fresh:
            everything = await fresh.read_all(0, 100_000)
    assert [key(e) for e in pages] == [key(e) for e in everything]
    assert sum(versions.values()) == len(everything)


async def test_consecutive_pages_share_one_consumer(nats_url: str) -> None:
    stream = f"test_{uuid4().hex}"
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a")
        for version in range(0, 200, 5):
            await store.append("thing", "a", version, make_events("a", version, 5))
        after, seen = 0, 0
        for _ in range(20):
            page = await store.read_all(after, 10)
            seen += len(page)
            after = page[-1].position
            assert await consumers(nats_url, stream) == 1
        assert seen == 200


async def test_a_page_ending_inside_a_command_goes_on_with_the_rest_of_it(nats_url: str) -> None:
    stream = f"test_{uuid4().hex}"
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a")
        for version in range(0, 60, 6):  # ten commands of six events each
            await store.append("thing", "a", version, make_events("a", version, 6))
        first = await store.read_all(0, 16)
        rest = await store.read_all(first[-1].position, 1000)
    assert [e.version for e in [*first, *rest]] == list(range(1, 61))


async def test_a_read_starting_inside_a_command_keeps_the_order(nats_url: str) -> None:
    stream = f"test_{uuid4().hex}"
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a")
        for version in range(0, 60, 6):  # ten commands of six events each
            await store.append("thing", "a", version, make_events("a", version, 6))
        everything = await store.read_all(0, 1000)
        after = everything[1].position  # inside the first command
        read: list[StoredEvent] = []
        page = await store.read_all(after, 3)
        while page:
            read.extend(page)
            page = await store.read_all(page[-1].position, 3)
    assert [e.version for e in read] == list(range(3, 61))


async def test_a_reader_whose_consumer_vanished_reads_on_from_a_new_one(nats_url: str) -> None:
    stream = f"test_{uuid4().hex}"
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a")
        for version in range(0, 100, 2):
            await store.append("thing", "a", version, make_events("a", version, 2))
        first = await store.read_all(0, 30)
        # The server forgets the consumer (an expiry, a restart of an in-memory consumer).
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            for info in await js.consumers_info(stream):
                await js.delete_consumer(stream, info.name)
        finally:
            await nc.close()
        await store.append("thing", "a", 100, make_events("a", 100, 5))
        rest = await store.read_all(first[-1].position, 1000)
    assert [e.version for e in [*first, *rest]] == list(range(1, 106))


async def test_pages_on_a_replicated_stream_see_acknowledged_writes(
    nats_cluster: NatsCluster,
) -> None:
    stream = f"test_{uuid4().hex}"
    writer = NatsStore(nats_cluster.urls[0], stream=stream, replicas=3)
    reader = NatsStore(nats_cluster.urls[2], stream=stream, replicas=3)
    async with writer, reader:
        await writer.create("thing", "a")
        after, version, read = 0, 0, 0
        for size in (30, 1, 12, 40, 2):
            await writer.append("thing", "a", version, make_events("a", version, size))
            version += size
            page = await reader.read_all(after, 25)
            while page:
                read += len(page)
                after = page[-1].position
                page = await reader.read_all(after, 25)
            assert read == version  # nothing acknowledged is missing, even from a replica


async def test_large_messages_page_through_a_narrower_window(nats_url: str) -> None:
    stream = f"test_{uuid4().hex}"
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "big")
        for version in range(60):
            [event] = make_events("big", version, 1)
            event = msgspec.structs.replace(event, data=bytes([version % 251]) * 300_000)
            await store.append("thing", "big", version, [event])
        read: list[StoredEvent] = []
        page = await store.read_all(0, 7)
        while page:
            read.extend(page)
            page = await store.read_all(page[-1].position, 7)
    assert [e.version for e in read] == list(range(1, 61))
    assert all(e.data == bytes([(e.version - 1) % 251]) * 300_000 for e in read)


@pytest.mark.parametrize("limit", [5, 1000])  # direct gets, and a reader
async def test_a_follower_past_an_empty_creation_waits_for_the_next_event(
    nats_url: str, limit: int
) -> None:
    stream = f"test_{uuid4().hex}"
    async with NatsStore(nats_url, stream=stream) as store:
        await store.create("thing", "a", make_events("a", 0, 2))
        await store.create("thing", "b")  # the newest message holds no event
        after = (await store.read_all(0, limit))[-1].position
        assert await store.read_all(after, limit) == []
        waiting = asyncio.create_task(store.wait_for_events(after))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # nothing to read: no wake-up, no busy loop of re-reads
        await store.append("thing", "b", 0, make_events("b", 0, 1))
        async with asyncio.timeout(5):
            await waiting
        assert [e.aggregate_id for e in await store.read_all(after, limit)] == ["b"]


async def test_messages_lost_on_a_dropped_connection_are_read_again_not_skipped(
    nats_server: NatsServer,
) -> None:
    """A consumer without acks counts a message delivered once sent: those sent while the
    reader's connection goes down are lost, and the same pull then delivers on the new one."""
    stream = f"test_{uuid4().hex}"
    proxy = StallingProxy(nats_server.port)
    await proxy.start()
    writer = NatsStore(nats_server.url, stream=stream)
    reader = NatsStore(f"nats://127.0.0.1:{proxy.port}", stream=stream, timeout=1.0)
    clock = asyncio.get_running_loop().time
    try:
        async with writer, reader:
            await writer.create("thing", "a", make_events("a", 0, 10))
            first = await reader.read_all(0, 1000)
            assert await reader.read_all(first[-1].position, 1000) == []  # a pull waits
            proxy.stall()  # the reader's connection goes silent; its next one will work
            proxy.resume()
            for version in range(10, 15):  # sent down the silent connection, and lost
                await writer.append("thing", "a", version, make_events("a", version, 1))
            deadline = clock() + 10
            while proxy.links < 2:  # missing pongs: the reader connects anew
                assert clock() < deadline, "the reader never connected again"
                await asyncio.sleep(0.05)
            await reader.head_position()  # the new connection answers
            for version in range(15, 20):  # the waiting pull delivers these on the new one
                await writer.append("thing", "a", version, make_events("a", version, 1))
            while True:  # the store may say it is unavailable meanwhile; a caller reads again
                try:
                    rest = await reader.read_all(first[-1].position, 1000)
                    break
                except StoreUnavailable:
                    assert clock() < deadline, "the reader did not recover"
                    await asyncio.sleep(0.05)
    finally:
        await proxy.close()
    assert [e.version for e in [*first, *rest]] == list(range(1, 21))
