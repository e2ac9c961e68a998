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
