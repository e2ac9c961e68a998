"""Power loss, not just a killed process: what survives when unsynced writes are gone.

A killed process loses nothing the kernel already holds, so SIGKILL alone cannot tell a store
that fsyncs from one that does not. These tests put the store's files on the lazy filesystem of
:mod:`lazyfs`, which holds every write until it is fsynced; crashing it leaves only synced data.
A writer acknowledges commands, the store's process is killed, the filesystem crashes, and the
store is opened again on what the "disk" kept:

* a NATS server with ``sync_interval: always`` keeps every acknowledged command;
* a NATS server with the default (fsync every two minutes) loses them all: the stream itself,
  whose files were never synced, is gone; killed without the power cut, it keeps them all;
* SQLite (WAL, ``synchronous=FULL``) keeps every acknowledged command, and a command in flight
  is whole or absent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from lazyfs import LazyMount, unavailable
from many_writer import config
from nats_servers import start_server

from eventsignal import Signal
from eventsignal.stores import EventStore, NatsStore, SQLiteStore

WRITER = Path(__file__).with_name("acking_writer.py")


@pytest.fixture
def lazy(tmp_path: Path) -> Iterator[LazyMount]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"cannot mount the lazy filesystem: {reason}")
    mount = LazyMount(tmp_path / "disk", tmp_path / "mnt")
    try:
        mount.mount()
    except OSError as exc:
        pytest.skip(f"cannot mount the lazy filesystem here: {exc}")
    try:
        yield mount
    finally:
        mount.unmount()


def test_the_lazy_filesystem_keeps_only_what_was_synced(lazy: LazyMount) -> None:
    synced, unsynced = lazy.mountpoint / "synced", lazy.mountpoint / "unsynced"
    with synced.open("wb") as file:
        file.write(b"a" * 5000)
        file.flush()
        os.fsync(file.fileno())
        file.write(b"b" * 100)  # after the sync: lost
    unsynced.write_bytes(b"never synced")
    assert synced.read_bytes() == b"a" * 5000 + b"b" * 100
    lazy.crash()
    lazy.mount()
    assert synced.read_bytes() == b"a" * 5000
    assert unsynced.read_bytes() == b""  # the name was kept, its bytes were not


def start_writer(kind: str, target: str, commands: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), "--store", kind, "--target", target]
        + (["--commands", str(commands)] if commands else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_acks(writer: subprocess.Popen[str], until: int, seconds: float) -> dict[str, int]:
    """Each aggregate's newest acknowledged version, from the writer's lines."""
    assert writer.stdout is not None
    acknowledged: dict[str, int] = {}
    seen = 0
    deadline = time.monotonic() + seconds
    while seen < until and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line or line == "done\n":
            break
        aggregate_id, version = line.split()
        acknowledged[aggregate_id] = max(acknowledged.get(aggregate_id, 0), int(version))
        seen += 1
    return acknowledged


async def stored_versions(store: EventStore) -> dict[str, int]:
    """Each aggregate's version, after checking it holds whole commands with no gap."""
    async with Signal(config(), store=store, telemetry=None) as checker:
        versions = {a.aggregate_id: a.version for a in await store.aggregates("tally")}
        for aggregate_id, version in versions.items():
            events = await checker.events(aggregate_id)
            assert [e.version for e in events] == list(range(1, version + 1)), aggregate_id
            parts = [e.data.part for e in events]
            # A command stores parts 0..n-1: one cut short would leave a part without its 0.
            assert all(p == 0 or parts[i - 1] == p - 1 for i, p in enumerate(parts)), parts
    return versions


def nats_power_loss(
    lazy: LazyMount, tmp_path: Path, *, sync_always: bool, power_cut: bool = True
) -> tuple[int, int]:
    """Acknowledge commands on a server whose JetStream files are on the lazy filesystem, kill
    the server, cut the power (unless told not to), and return (aggregates acknowledged, of
    those still stored at their acknowledged version)."""
    directory = tmp_path / "server"
    directory.mkdir()
    (directory / "jetstream").symlink_to(lazy.mountpoint)
    server = start_server(directory, sync_always=sync_always)
    stream = f"power_{uuid4().hex}"
    writer = start_writer("nats", f"{server.url}?stream={stream}&durability=ignore", 200)
    try:
        acknowledged = read_acks(writer, 200, 60)
        assert writer.stdout is not None
        assert writer.stdout.readline() == "done\n", writer.stderr and writer.stderr.read()
        server.kill()
    finally:
        writer.kill()
        writer.communicate()
        server.stop()
    if power_cut:
        lazy.crash()
        lazy.mount()
    server = start_server(directory, sync_always=sync_always)
    try:
        store = NatsStore(server.url, stream=stream, durability="ignore")
        stored = asyncio.run(_versions_of(store))
    finally:
        server.stop()
    kept = sum(stored.get(a, 0) >= v for a, v in acknowledged.items())
    return len(acknowledged), kept


async def _versions_of(store: NatsStore) -> dict[str, int]:
    async with store:
        return await stored_versions(store)


@pytest.mark.nats
def test_nats_with_fsync_always_keeps_every_acknowledged_command(
    lazy: LazyMount, tmp_path: Path
) -> None:
    aggregates, kept = nats_power_loss(lazy, tmp_path, sync_always=True)
    assert aggregates >= 40
    assert kept == aggregates


@pytest.mark.nats
def test_nats_with_the_default_fsync_loses_acknowledged_commands(
    lazy: LazyMount, tmp_path: Path
) -> None:
    # Nothing was fsynced within the default two minutes, not even the stream's own files: the
    # restarted server does not know the stream, and the store makes a new, empty one.
    aggregates, kept = nats_power_loss(lazy, tmp_path, sync_always=False)
    assert aggregates >= 40
    assert kept == 0


@pytest.mark.nats
def test_nats_with_the_default_fsync_survives_a_killed_server(
    lazy: LazyMount, tmp_path: Path
) -> None:
    # The same run without the power cut: what the server wrote is in the kernel's hands.
    aggregates, kept = nats_power_loss(lazy, tmp_path, sync_always=False, power_cut=False)
    assert aggregates >= 40
    assert kept == aggregates


def test_sqlite_keeps_every_acknowledged_command(lazy: LazyMount) -> None:
    path = lazy.mountpoint / "events.db"

    async def migrate() -> None:
        async with SQLiteStore(path, migrate=True):
            pass

    asyncio.run(migrate())
    writer = start_writer("sqlite", str(path))
    try:
        acknowledged = read_acks(writer, 150, 60)
    finally:
        writer.send_signal(signal.SIGKILL)
        _, errors = writer.communicate(timeout=10)
    assert writer.returncode == -signal.SIGKILL, errors
    assert len(acknowledged) >= 20, errors
    lazy.crash()
    lazy.mount()

    async def check() -> dict[str, int]:
        async with SQLiteStore(path) as store:
            return await stored_versions(store)

    stored = asyncio.run(check())
    lost = {a: v for a, v in acknowledged.items() if stored.get(a, 0) < v}
    assert lost == {}
