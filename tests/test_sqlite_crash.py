"""A writer process killed mid-load loses nothing it acknowledged and leaves no half command."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from eventsignal.stores import SQLiteStore

# Each command stores three events; an acknowledgement is printed only once append returned.
WRITER = """
import asyncio, sys
from dataclasses import dataclass
from eventsignal import AggregateConfig, Signal
from eventsignal.stores import SQLiteStore

@dataclass(frozen=True)
class Step:
    n: int

def handle(command, state):
    return [Step(command), Step(command), Step(command)]

def apply(state, event):
    return state + 1

CONFIG = AggregateConfig(
    name="counter", initial_state=0, command_handler=handle, event_handler=apply, events=[Step]
)

async def worker(signal, worker_id):
    for k in range(10**9):
        handle = await signal.create(f"w{worker_id}-{k}")
        for n in range(5):
            await handle.handle_command(n)
            sys.stdout.write(f"{handle.id} {handle.version}\\n")
            sys.stdout.flush()

async def main():
    store = SQLiteStore(sys.argv[1], migrate=True)
    async with Signal(CONFIG, store=store, telemetry=None) as signal:
        await asyncio.gather(*(worker(signal, i) for i in range(8)))

asyncio.run(main())
"""


def test_killed_writer_keeps_every_acknowledged_command(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged: dict[str, int] = {}
    deadline = time.monotonic() + 20
    try:
        while len(acknowledged) < 120 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            aggregate_id, version = line.split()
            acknowledged[aggregate_id] = int(version)
    finally:
        writer.send_signal(signal.SIGKILL)
        rest, errors = writer.communicate(timeout=10)
    assert writer.returncode == -signal.SIGKILL, errors
    assert len(acknowledged) >= 120, errors
    for line in rest.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():  # the last line may be cut short
            acknowledged[parts[0]] = max(acknowledged.get(parts[0], 0), int(parts[1]))

    asyncio.run(check_store(path, acknowledged))


async def check_store(path: Path, acknowledged: dict[str, int]) -> None:
    store = SQLiteStore(path)
    await store.open()
    try:
        stored = {a.aggregate_id: a.version for a in await store.aggregates("counter")}
        for aggregate_id, version in acknowledged.items():
            assert stored.get(aggregate_id, -1) >= version, aggregate_id
        for aggregate_id, version in stored.items():
            assert version % 3 == 0, (aggregate_id, version)  # no command half-written
            events = await store.read_aggregate("counter", aggregate_id)
            assert [e.version for e in events] == list(range(1, version + 1))
        everything = await store.read_all(0, limit=1_000_000)
        assert len(everything) == sum(stored.values())
        positions = [e.position for e in everything]
        assert positions == sorted(set(positions))
    finally:
        await store.close()


# Two processes send commands to the same aggregates; the file's write lock and the version check
# must make every conflict visible, so that Signal catches up and retries instead of losing one.
RACER = """
import asyncio, sys
from dataclasses import dataclass
from eventsignal import AggregateConfig, Signal
from eventsignal.stores import SQLiteStore
from eventsignal.telemetry import CommandConflicted

@dataclass(frozen=True)
class Step:
    n: int

CONFIG = AggregateConfig(
    name="counter", initial_state=0, events=[Step],
    command_handler=lambda command, state: [Step(command)],
    event_handler=lambda state, event: state + event.data.n,
)
conflicts = 0

def count(report):
    global conflicts
    conflicts += isinstance(report, CommandConflicted)

async def main():
    store = SQLiteStore(sys.argv[1])
    async with Signal(CONFIG, store=store, telemetry=count, conflict_retries=10_000) as signal:
        print("ready", flush=True)
        sys.stdin.readline()

        async def client(aggregate_id):
            for _ in range(50):
                await signal.handle_command(aggregate_id, 1)

        await asyncio.gather(*(client(f"shared-{i}") for i in range(4)))
    print(conflicts, flush=True)

asyncio.run(main())
"""


def test_two_writer_processes_lose_no_command(tmp_path: Path) -> None:
    path = tmp_path / "race.db"

    async def create() -> None:
        store = SQLiteStore(path, migrate=True)
        await store.open()
        for i in range(4):
            await store.create("counter", f"shared-{i}")
        await store.close()

    asyncio.run(create())
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for racer in racers:
        assert racer.stdout is not None
        assert racer.stdout.readline() == "ready\n"
    for racer in racers:  # start both at once
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in outputs]
    conflicts = sum(int(out) for out, _ in outputs)
    assert conflicts > 0  # they did race

    async def check() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            versions = {a.aggregate_id: a.version for a in await store.aggregates("counter")}
            assert versions == {f"shared-{i}": 100 for i in range(4)}
            for aggregate_id in versions:
                events = await store.read_aggregate("counter", aggregate_id)
                assert [e.version for e in events] == list(range(1, 101))
        finally:
            await store.close()

    asyncio.run(check())
