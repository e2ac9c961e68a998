"""What a NatsStore's acknowledgement promises, learned at open and required, warned of or ignored.

Against the session's fsync-always server, a server of this module's own that keeps the default
(periodic) fsync, and the three-server cluster.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import nats
import pytest
from nats_servers import NatsCluster, NatsServer, free_port, start_server

from eventsignal import ConfigurationError, StoreUnavailable
from eventsignal.stores import NatsStore
from eventsignal.stores.urls import InvalidStoreURL, open_store

pytestmark = pytest.mark.nats

WARNING = "an acknowledged write may be lost in a crash"


@pytest.fixture(scope="module")
def periodic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A server with JetStream's default fsync: every two minutes, not every write."""
    server = start_server(tmp_path_factory.mktemp("nats-periodic"), sync_always=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    """A fresh stream name; the stream is deleted from whichever servers the test used."""
    name = f"test_{uuid4().hex}"
    used.clear()
    yield name
    for servers in used:
        nc = await nats.connect(servers)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()


used: list[str | list[str]] = []


def on(servers: str | list[str], stream: str, **options: object) -> NatsStore:
    used.append(servers)
    return NatsStore(servers, stream=stream, **options)  # type: ignore[arg-type]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "eventsignal.stores.nats" and r.levelno == logging.WARNING
    ]


async def test_require_opens_on_a_server_that_fsyncs_every_write(
    nats_server: NatsServer, stream: str
) -> None:
    store = on(nats_server.url, stream, durability="require", monitor=nats_server.monitor)
    async with store:
        await store.create("thing", "a")
        assert await store.exists("thing", "a")


async def test_require_refuses_a_server_that_fsyncs_periodically(
    periodic_server: NatsServer, stream: str
) -> None:
    store = on(periodic_server.url, stream, durability="require", monitor=periodic_server.monitor)
    with pytest.raises(ConfigurationError, match=r"sync_interval: always \}") as refused:
        await store.open()
    assert "replicas=3" in str(refused.value)
    assert not store.is_open
    with pytest.raises(ConfigurationError):  # refused again, not only the first time
        await store.open()


async def test_require_without_a_monitor_asks_for_one(nats_url: str, stream: str) -> None:
    store = on(nats_url, stream, durability="require")
    with pytest.raises(ConfigurationError, match="pass monitor="):
        await store.open()
    assert not store.is_open


async def test_require_with_a_silent_monitor_is_unavailable(nats_url: str, stream: str) -> None:
    silent = f"http://127.0.0.1:{free_port()}"
    store = on(nats_url, stream, durability="require", monitor=silent, timeout=1.0)
    with pytest.raises(StoreUnavailable, match="monitoring endpoint"):
        await store.open()
    assert not store.is_open


async def test_warn_logs_once_and_opens(
    periodic_server: NatsServer, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "eventsignal.stores.nats")
    store = on(periodic_server.url, stream, monitor=periodic_server.monitor)
    assert store.durability == "warn"
    for _ in range(2):
        async with store:
            await store.exists("thing", "a")
    (warning,) = warnings_of(caplog)
    assert WARNING in warning
    assert "fsync only every sync_interval" in warning


async def test_ignore_says_nothing(
    periodic_server: NatsServer, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "eventsignal.stores.nats")
    async with on(periodic_server.url, stream, durability="ignore"):
        pass
    assert warnings_of(caplog) == []


async def test_warn_is_silent_where_every_write_is_fsynced(
    nats_server: NatsServer, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "eventsignal.stores.nats")
    async with on(nats_server.url, stream, monitor=nats_server.monitor):
        pass
    assert warnings_of(caplog) == []


async def test_a_quorum_of_three_replicas_is_durable_without_fsync(
    nats_cluster: NatsCluster, stream: str
) -> None:
    assert not nats_cluster.servers[0].get("varz")["jetstream"]["config"].get("sync_always")
    store = on(nats_cluster.urls, stream, replicas=3, durability="require")
    async with store:
        await store.create("thing", "a")


async def test_one_replica_on_a_cluster_without_fsync_is_refused(
    nats_cluster: NatsCluster, stream: str
) -> None:
    store = on(nats_cluster.urls, stream, durability="require", monitor=nats_cluster.monitors)
    with pytest.raises(ConfigurationError, match="the stream has 1 replica and"):
        await store.open()


async def test_the_streams_own_replicas_count_not_the_ones_asked_for(
    nats_cluster: NatsCluster, stream: str
) -> None:
    async with on(nats_cluster.urls, stream, replicas=3, durability="require"):
        pass
    # The stream exists with three replicas: a store asking for one uses it as it is.
    async with on(nats_cluster.urls, stream, replicas=1, durability="require"):
        pass


def test_durability_is_checked_and_comes_through_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="durability must be one of"):
        NatsStore(durability="always")  # type: ignore[arg-type]
    store = open_store("nats://h:4222?durability=require&monitor=http://a:8222,http://b:8222")
    assert isinstance(store, NatsStore)
    assert (store.durability, store.monitors) == ("require", ["http://a:8222", "http://b:8222"])
    with pytest.raises(InvalidStoreURL, match="durability must be one of"):
        open_store("nats://h:4222?durability=maybe")
