"""The relay as its own process (``eventsignal publish STORE --to URL``): killed with SIGKILL in
the middle of its work and started again, it publishes every event, and a consumer that drops
copies by CloudEvent id sees each exactly once. Its lag shows in ``eventsignal subscriptions``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from accounts import DepositMany, config
from publishing_brokers import SECRET as WEBHOOK_SECRET
from publishing_brokers import (
    Broker,
    NatsBroker,
    RabbitBroker,
    RedisBroker,
    WebhookBroker,
    check_delivered,
    received_all,
)

from eventsignal import Signal
from eventsignal.stores import SQLiteStore
from eventsignal.subscriptions import subscription_status

CLI = [sys.executable, "-c", "from eventsignal.cli import main; main()"]
RELAY_OPTIONS = ["--name", "relay", "--batch-size", "10", "--lease-ttl", "1"]
EVENTS = 600  # 20 commands of 30 events over 8 accounts


@pytest.fixture(params=["nats", "redis", "rabbitmq", "http"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    found: Broker
    if request.param == "nats":
        found = NatsBroker(request.getfixturevalue("nats_url"))
    elif request.param == "redis":
        found = RedisBroker()
    elif request.param == "rabbitmq":
        found = RabbitBroker()
    else:
        web = WebhookBroker()
        await web.start()
        found = web
    yield found
    await found.cleanup()


def relay(database: Path, broker: Broker) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "publish", str(database), "--to", broker.url(), *RELAY_OPTIONS],
        env={**os.environ, "EVENTSIGNAL_WEBHOOK_SECRET": WEBHOOK_SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def lag(database: Path) -> int:
    async with SQLiteStore(database, migrate=False) as store:
        found = {s.name: s.lag for s in await subscription_status(store)}
    return found.get("relay", EVENTS)


async def test_a_relay_killed_mid_batch_publishes_everything_after_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    database = tmp_path / "events.db"
    async with SQLiteStore(database, migrate=True) as store:
        async with Signal(config(), store=store) as accounts:
            for n in range(EVENTS // 30):
                account = f"acc-{n % 8}"
                if n < 8:
                    await accounts.create(account, DepositMany(1, 30))
                else:
                    await accounts.handle_command(account, DepositMany(1, 30))
        stored = list(await store.read_all(0, EVENTS + 1))
    first = relay(database, broker)
    try:
        deadline = time.monotonic() + 30
        while await broker.count() < 50 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    published_before = await broker.count()
    assert 0 < published_before < EVENTS, "the kill came too late to interrupt the relay"
    assert await lag(database) > 0
    second = relay(database, broker)
    try:
        deadline = time.monotonic() + 60
        while await lag(database) > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert await lag(database) == 0, second.stderr
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=20)
    assert second.returncode == 0, err.decode()
    assert b"publishing account from" in err
    check_delivered(await received_all(broker, EVENTS, within=20), stored)

    shown = await asyncio.create_subprocess_exec(
        *CLI, "subscriptions", str(database), stdout=subprocess.PIPE
    )
    out, _ = await shown.communicate()
    row = next(line for line in out.decode().splitlines() if line.startswith("relay"))
    assert row.split()[1:4] == [str(EVENTS), str(EVENTS), "0"]  # position, head, lag
