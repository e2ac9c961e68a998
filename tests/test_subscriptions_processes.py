"""Competing consumers in real OS processes: sharing the work, and surviving SIGKILL."""

from __future__ import annotations

import asyncio
import signal as signals
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from subscription_worker import expected_from_events, open_store, projected, write_carts

from eventsignal import Signal
from eventsignal.cart import cart_config
from eventsignal.stores import EventStore, SQLiteStore
from eventsignal.stores.subscription_state import Lease
from eventsignal.subscriptions import wait_until_processed

WORKER = Path(__file__).with_name("subscription_worker.py")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("nats-cluster", marks=pytest.mark.nats),
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "events.db")
    stream = f"stream=test_{uuid4().hex}&durability=ignore"
    if request.param == "nats":
        return "nats", f"{request.getfixturevalue('nats_url')}?{stream}"
    if request.param == "nats-cluster":
        servers = ",".join(request.getfixturevalue("nats_cluster").urls)
        return "nats", f"{servers}?{stream}&replicas=3"
    return "postgres", request.getfixturevalue("postgres_dsn")


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.member = ""

    async def ready(self) -> None:
        assert self.process.stdout is not None
        async with asyncio.timeout(20):
            line = await self.process.stdout.readline()
        assert line.startswith(b"ready"), line
        self.member = line.split()[1].decode()

    async def stop(self) -> int:
        """SIGTERM; the number of events it delivered."""
        self.process.send_signal(signals.SIGTERM)
        out, _ = await asyncio.wait_for(self.process.communicate(), 20)
        assert self.process.returncode == 0
        return int(out.split()[-1])


@pytest.fixture
async def spawn(database: tuple[str, str]) -> AsyncIterator[list[Worker]]:
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()


async def start_worker(database: tuple[str, str], workers: list[Worker], *options: str) -> Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        *database,
        "--partitions",
        "4",
        "--lease-ttl",
        "1",
        "--batch-size",
        "20",
        *options,
        stdout=asyncio.subprocess.PIPE,
    )
    worker = Worker(process)
    workers.append(worker)
    await worker.ready()
    return worker


async def leases(store: EventStore) -> list[Lease]:
    state: Any = store
    async with state.subscription_reads() as reads:
        found: list[Lease] = await reads.leases("revenue")
        return found


async def owners(store: EventStore) -> dict[int, str | None]:
    return {lease.part: lease.owner for lease in await leases(store)}


async def until_owned_by(store: EventStore, count: int) -> dict[int, str | None]:
    async with asyncio.timeout(20):
        while True:
            owned = await owners(store)
            if len(owned) == 4 and None not in owned.values() and len(set(owned.values())) == count:
                return owned
            await asyncio.sleep(0.1)


async def check_projection(store: EventStore) -> None:
    head = await store.head_position()
    await wait_until_processed(store, "revenue", head, timeout=30)
    revenue, versions = await expected_from_events(store)
    assert await projected(store) == (revenue, versions, 0)


async def test_two_processes_share_the_work_while_a_third_writes(
    database: tuple[str, str], spawn: list[Worker]
) -> None:
    first = await start_worker(database, spawn)
    second = await start_worker(database, spawn)
    store = open_store(*database)
    async with Signal(cart_config, store=store, telemetry=None) as writer:
        await until_owned_by(store, 2)
        await write_carts(writer, [f"cart-{i}" for i in range(60)], seed=5)
        await check_projection(store)
        delivered = [await first.stop(), await second.stop()]
    assert all(n > 0 for n in delivered), delivered


async def test_a_killed_process_hands_its_partitions_to_the_survivor(
    database: tuple[str, str], spawn: list[Worker]
) -> None:
    victim = await start_worker(database, spawn)
    survivor = await start_worker(database, spawn)
    store = open_store(*database)
    async with Signal(cart_config, store=store, telemetry=None) as writer:
        await until_owned_by(store, 2)
        writing = asyncio.create_task(write_carts(writer, [f"cart-{i}" for i in range(80)], seed=6))
        async with asyncio.timeout(20):  # kill it in the middle of writing and projecting
            while True:
                progress = [x.position for x in await leases(store) if x.owner == victim.member]
                if any(progress):
                    break
                await asyncio.sleep(0.02)
        assert not writing.done()
        victim.process.send_signal(signals.SIGKILL)
        await victim.process.wait()
        await writing
        await until_owned_by(store, 1)
        await check_projection(store)
        assert await survivor.stop() > 0


async def pause(worker: Worker, store: EventStore) -> None:
    """SIGSTOP the worker; on SQLite, between two of its transactions.

    SQLite has one write lock per file and no server to end the transaction of a process stopped
    while holding it: every writer would stall until it resumes (the failure model's "stall").
    Holding the lock ourselves while the signal lands keeps the worker out of a transaction.
    """
    if not isinstance(store, SQLiteStore):
        worker.process.send_signal(signals.SIGSTOP)
        return
    async with store.transaction():
        worker.process.send_signal(signals.SIGSTOP)
        await asyncio.sleep(0.2)  # a stop signal takes effect long before this


async def test_a_paused_process_cannot_apply_events_after_losing_its_lease(
    database: tuple[str, str], spawn: list[Worker]
) -> None:
    """A zombie (SIGSTOP past its lease, then SIGCONT) finds its partitions taken over; its
    late commits fail the checkpoint compare-and-set and roll back, so nothing is applied twice."""
    # Slow handlers: the pause almost surely lands inside an open transaction.
    zombie = await start_worker(database, spawn, "--slow", "0.003")
    survivor = await start_worker(database, spawn, "--slow", "0.003")
    store = open_store(*database)
    async with Signal(cart_config, store=store, telemetry=None) as writer:
        await until_owned_by(store, 2)
        writing = asyncio.create_task(write_carts(writer, [f"cart-{i}" for i in range(80)], seed=7))
        async with asyncio.timeout(20):
            while True:
                progress = [x.position for x in await leases(store) if x.owner == zombie.member]
                if any(progress):
                    break
                await asyncio.sleep(0.02)
        await pause(zombie, store)
        await until_owned_by(store, 1)  # its leases (1 s) expired and the survivor took them
        zombie.process.send_signal(signals.SIGCONT)
        await writing
        await check_projection(store)
        await zombie.stop()  # it recovers and shuts down cleanly
        assert await survivor.stop() > 0
