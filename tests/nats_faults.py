"""Fault runs on a JetStream cluster, in the style of Jepsen's analysis of JetStream.

A run starts writer processes (:mod:`fault_writer`) on shared aggregates of one three-replica
stream and a subscription folding every event into a read model, injects faults into the
cluster's servers while they write (SIGKILL, SIGSTOP/SIGCONT, restarts), stops them and checks
what the cluster kept against what the writers were told:

* every acknowledged command is stored exactly once, whole;
* a command whose outcome was unknown (a timeout) is stored whole or not at all, never twice;
* a refused command is not stored, and nothing is stored that no writer sent;
* each aggregate's versions run 1, 2, 3... without a gap, and its state (a tally of every
  event's number) equals what the stored commands add up to: no update was lost;
* the subscription's read model equals the fold of the stream.

It also measures each fault's *failover time*: the longest stretch, from the fault until the
next one, in which no command was acknowledged anywhere.

``tests/test_nats_faults.py`` runs a few rounds; ``benchmarks/bench_nats_faults.py`` runs more
and prints the figures. Both start the cluster with :mod:`nats_servers`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from asyncio.subprocess import Process
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from many_writer import Added, Tally, apply, config
from nats_servers import NatsCluster, NatsServer

from eventsignal import Event, Signal, StoreUnavailable
from eventsignal.stores import NatsStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner

WRITER = Path(__file__).with_name("fault_writer.py")
WRITERS = 3
AGGREGATES = 20
TIMEOUT = 2.0
"""Seconds a writer waits for an answer: beyond it the command's outcome is unknown."""
PAUSE = 10.0
"""Seconds a paused server stays stopped: longer than JetStream's election timeout (4-9 s)."""
WARM_UP = 1.0
"""Seconds of commands before a fault, and after recovery before the run ends."""
_RECOVERY = 60.0


@dataclass(frozen=True)
class Command:
    worker: int
    aggregate_id: str
    number: int
    events: int
    started: float
    ended: float
    outcome: str  # ok, unknown or refused (see fault_writer)
    error: str = ""


@dataclass
class Run:
    """What one run did: the faults it injected (name, time) and every command sent."""

    name: str
    faults: list[tuple[str, float]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    ended: float = 0.0
    unknown: list[tuple[Command, bool]] = field(default_factory=list)
    """Each command of unknown outcome, and whether the stream holds it after all."""

    @property
    def unknown_stored(self) -> int:
        return sum(stored for _, stored in self.unknown)

    def fault(self, name: str) -> None:
        self.faults.append((name, time.monotonic()))

    def outcomes(self) -> Counter[str]:
        return Counter(c.outcome for c in self.commands)

    def failover(self) -> list[tuple[str, float]]:
        """Each fault and the longest time, from it to the next fault, without an ack."""
        acks = sorted(c.ended for c in self.commands if c.outcome == "ok")
        bounds = [at for _, at in self.faults[1:]] + [self.ended]
        blocked = []
        for (name, at), until in zip(self.faults, bounds, strict=True):
            times = [at, *(t for t in acks if at < t < until), until]
            blocked.append((name, max(b - a for a, b in itertools.pairwise(times))))
        return blocked

    def errors(self) -> Counter[str]:
        """How often each kind of failure happened (numbers and names left out)."""
        return Counter(
            f"{c.outcome}: {re.sub(r'[0-9.]+|shared-[0-9]+', '#', c.error)[:150]}"
            for c in self.commands
            if c.outcome != "ok"
        )

    def summary(self) -> str:
        counts = self.outcomes()
        failovers = ", ".join(f"{name}: {seconds:.1f} s" for name, seconds in self.failover())
        return (
            f"{self.name}: {counts['ok']} acknowledged, {counts['unknown']} unknown "
            f"({self.unknown_stored} of them stored), {counts['refused']} refused; "
            f"longest without an acknowledgement after {failovers}"
        )


class ReadModel:
    """A subscription's read model: each aggregate's tally, folded from delivered events.

    Delivery on JetStream is at least once, so an event at a version already folded is a
    redelivery and skipped; one that skips a version is an anomaly the check reports.
    """

    def __init__(self) -> None:
        self.tallies: dict[str, Tally] = {}
        self.versions: dict[str, int] = {}
        self.redelivered = 0
        self.anomalies: list[tuple[str, int, int, int]] = []  # id, known, version, position

    async def __call__(self, event: Event[Added]) -> None:
        known = self.versions.get(event.aggregate_id, 0)
        if event.version <= known:
            self.redelivered += 1
            return
        if event.version != known + 1:
            self.anomalies.append((event.aggregate_id, known, event.version, event.position))
        self.versions[event.aggregate_id] = event.version
        self.tallies[event.aggregate_id] = apply(
            self.tallies.get(event.aggregate_id, Tally()), event
        )


async def run(
    cluster: NatsCluster,
    stream: str,
    name: str,
    faults: Callable[[Run, NatsStore, NatsCluster], Awaitable[None]],
) -> Run:
    """Write through ``faults`` (which injects them and waits for recovery), then check."""
    record = Run(name)
    store = NatsStore(cluster.urls, stream=stream, replicas=3, timeout=TIMEOUT)
    model = ReadModel()
    subscription = Subscription(
        name="tallies",
        handler=model,
        configs=[config()],
        poll_interval=0.2,
        retry_delay=0.01,
        max_retry_delay=0.05,
    )
    writers: list[Process] = []
    async with store, SubscriptionRunner(subscription, store):
        try:
            await _start_writers(cluster, stream, writers)
            for writer in writers:
                _send(writer, b"go\n")
            await faults(record, store, cluster)
            record.ended = time.monotonic()
            for writer in writers:
                _send(writer, b"stop\n")
            async with asyncio.timeout(_RECOVERY):
                outputs = [await writer.communicate() for writer in writers]
        finally:
            for writer in writers:
                if writer.returncode is None:
                    writer.kill()
                    await writer.wait()
        assert [w.returncode for w in writers] == [0] * WRITERS, [e for _, e in outputs]
        for stdout, _ in outputs:
            report = json.loads(stdout)
            record.commands.extend(Command(report["worker"], *c) for c in report["commands"])
        await check(store, record, model)
    return record


async def check(store: NatsStore, record: Run, model: ReadModel) -> None:
    """Check once the cluster answers reads: its meta layer may still be settling after a
    fault, which the store reports as unavailable, and reading again is harmless."""
    deadline = time.monotonic() + _RECOVERY
    while True:
        try:
            await _check(store, record, model)
            return
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _start_writers(cluster: NatsCluster, stream: str, writers: list[Process]) -> None:
    """Start the writers (into ``writers``, for the caller to stop) and wait until all are ready."""
    for k in range(WRITERS):
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WRITER),
            *("--servers", ",".join(cluster.urls), "--stream", stream, "--worker", str(k)),
            *("--aggregates", str(AGGREGATES), "--timeout", str(TIMEOUT)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        writers.append(writer)
    async with asyncio.timeout(_RECOVERY):
        for writer in writers:
            assert writer.stdout is not None
            line = await writer.stdout.readline()
            if line.strip() != b"ready":
                _, errors = await writer.communicate()
                raise RuntimeError(f"a writer did not start: {errors.decode()[-2000:]}")


def _send(writer: Process, line: bytes) -> None:
    assert writer.stdin is not None
    writer.stdin.write(line)


# Faults


async def kill_leader_then_follower(record: Run, store: NatsStore, cluster: NatsCluster) -> None:
    """SIGKILL the stream's leader; once commands flow again restart it; once it caught up
    SIGKILL the other follower, and restart it too. One server is down at a time, so a quorum
    is always there to elect a leader."""
    await asyncio.sleep(WARM_UP)
    leader = await stream_leader(cluster, store.stream)
    record.fault(f"SIGKILL of the leader {leader.name}")
    leader.kill()
    await progress(store)
    record.fault(f"restart of the old leader {leader.name}")
    await asyncio.to_thread(leader.restart)
    await caught_up(cluster, store.stream)
    now_leading = await stream_leader(cluster, store.stream)
    # The server neither leading nor just restarted: a follower that saw the whole run.
    follower = next(s for s in cluster.servers if s not in (now_leading, leader))
    record.fault(f"SIGKILL of the follower {follower.name}")
    follower.kill()
    await asyncio.sleep(WARM_UP)
    await progress(store)
    record.fault(f"restart of the follower {follower.name}")
    await asyncio.to_thread(follower.restart)
    await caught_up(cluster, store.stream)
    await asyncio.sleep(WARM_UP)


async def kill_leader_and_follower(record: Run, store: NatsStore, cluster: NatsCluster) -> None:
    """SIGKILL the stream's leader and, once a new one leads, a follower: two of three servers
    are down, the stream has no quorum and every command fails until both are restarted."""
    await asyncio.sleep(WARM_UP)
    leader = await stream_leader(cluster, store.stream)
    record.fault(f"SIGKILL of the leader {leader.name}")
    leader.kill()
    await progress(store)
    follower = next(s for s in cluster.servers if s is not leader)
    record.fault(f"SIGKILL of a second server {follower.name}")
    follower.kill()
    await asyncio.sleep(2 * WARM_UP)
    record.fault(f"restart of both {leader.name} {follower.name}")
    await asyncio.gather(asyncio.to_thread(leader.restart), asyncio.to_thread(follower.restart))
    await progress(store)
    await caught_up(cluster, store.stream)
    await asyncio.sleep(WARM_UP)


async def pause_leader(record: Run, store: NatsStore, cluster: NatsCluster) -> None:
    """SIGSTOP the stream's leader for longer than an election takes, then SIGCONT it."""
    await asyncio.sleep(WARM_UP)
    leader = await stream_leader(cluster, store.stream)
    record.fault(f"SIGSTOP of the leader {leader.name}")
    leader.pause()
    try:
        await asyncio.sleep(PAUSE)
    finally:
        leader.resume()
    record.fault(f"SIGCONT of the old leader {leader.name}")
    await progress(store)
    await caught_up(cluster, store.stream)
    await asyncio.sleep(WARM_UP)


async def stream_leader(cluster: NatsCluster, stream: str) -> NatsServer:
    """The server leading ``stream`` now, once it has one."""
    servers = {s.name: s for s in cluster.servers}
    deadline = time.monotonic() + _RECOVERY
    while True:
        info = await _stream_info(cluster, stream)
        leader = ((info or {}).get("cluster") or {}).get("leader")
        if leader in servers:
            return servers[leader]
        assert time.monotonic() < deadline, f"stream {stream} has no leader"
        await asyncio.sleep(0.1)


async def caught_up(cluster: NatsCluster, stream: str) -> None:
    """Wait until the stream has a leader and every replica is current."""
    deadline = time.monotonic() + _RECOVERY
    while True:
        info = await _stream_info(cluster, stream)
        placed = (info or {}).get("cluster") or {}
        replicas = placed.get("replicas") or []
        if placed.get("leader") and len(replicas) == 2 and all(r.get("current") for r in replicas):
            return
        assert time.monotonic() < deadline, f"stream {stream} replicas not current: {placed}"
        await asyncio.sleep(0.1)


async def _stream_info(cluster: NatsCluster, stream: str) -> dict[str, Any] | None:
    """The stream's info from the first server that answers, or None."""
    import nats

    for server in cluster.servers:
        if server.process.poll() is not None:
            continue
        try:
            nc = await nats.connect(server.url, connect_timeout=1, allow_reconnect=False)
        except Exception:
            continue
        try:
            reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=1)
            info: dict[str, Any] = json.loads(reply.data)
            if "error" not in info:
                return info
        except Exception:
            pass
        finally:
            await nc.close()
    return None


async def progress(store: NatsStore, messages: int = 10) -> None:
    """Wait until the stream took ``messages`` more commands: writes flow again."""
    deadline = time.monotonic() + _RECOVERY
    start: int | None = None
    while True:
        try:
            head = await store.head_position()
        except StoreUnavailable:
            head = None
        if head is not None:
            if start is None:
                start = head
            elif head - start >= messages:
                return
        assert time.monotonic() < deadline, "commands did not flow again"
        await asyncio.sleep(0.1)


# Checks


async def _check(store: NatsStore, record: Run, model: ReadModel) -> None:
    """What the stream holds against what the writers were told (see the module's doc)."""
    record.unknown.clear()
    by_command = {(c.worker, c.number): c for c in record.commands}
    stored: Counter[tuple[int, int, int]] = Counter()
    versions: dict[str, int] = {}
    async with Signal(config(), store=store, telemetry=None) as checker:
        for n in range(AGGREGATES):
            aggregate_id = f"shared-{n}"
            events = await checker.events(aggregate_id)
            assert [e.version for e in events] == list(range(1, len(events) + 1)), aggregate_id
            stored.update((e.data.worker, e.data.number, e.data.part) for e in events)
            versions[aggregate_id] = len(events)
            state = (await checker.aggregate(aggregate_id)).state
            present = {(e.data.worker, e.data.number) for e in events}
            adds = [by_command[key] for key in present if key in by_command]
            assert state.count == sum(c.events for c in adds) == len(events), aggregate_id
            assert state.total == sum(c.number * c.events for c in adds), aggregate_id
        twice = [key for key, times in stored.items() if times > 1]
        assert twice == [], f"stored more than once: {twice[:10]}"
        phantom = [k for k in stored if (k[0], k[1]) not in by_command]
        assert phantom == [], f"stored, but no writer sent it: {phantom[:10]}"
        for command in record.commands:
            parts = sum(
                (command.worker, command.number, p) in stored for p in range(command.events)
            )
            where = (command.aggregate_id, command.worker, command.number, command.error)
            if command.outcome == "ok":
                assert parts == command.events, f"acknowledged, not stored: {where}"
            elif command.outcome == "unknown":
                assert parts in (0, command.events), f"stored in part: {where}"
                record.unknown.append((command, parts > 0))
            else:
                assert parts == 0, f"refused, yet stored: {where}"
        everything = 0
        position = 0
        while page := await store.read_all(position, 1000):
            everything += len(page)
            assert page[-1].position > position
            position = page[-1].position
        assert everything == sum(stored.values())

        # The subscription catches up with the stream, then equals its fold.
        deadline = time.monotonic() + _RECOVERY
        while {a: v for a, v in model.versions.items() if v} != {
            a: v for a, v in versions.items() if v
        }:
            assert time.monotonic() < deadline, "the subscription did not catch up"
            await asyncio.sleep(0.1)
        assert model.anomalies == [], (
            f"skipped (aggregate, folded, delivered, position): {model.anomalies[:10]}"
        )
        for aggregate_id, version in versions.items():
            if version:
                live = await checker.aggregate(aggregate_id)
                assert model.tallies[aggregate_id] == live.state, aggregate_id
