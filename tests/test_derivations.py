"""Property: four ways to derive an aggregate's state agree.

For random command sequences and random snapshot intervals: the live state, the state rebuilt
from events, the state rebuilt from a snapshot plus the tail, and the state replayed to each
version all agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from accounts import Close, Deposit, DepositTwice, Withdraw, config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import CommandRejected, Signal
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.stores import MemoryStore

commands = st.lists(
    st.one_of(
        st.builds(Deposit, st.integers(1, 30)),
        st.builds(DepositTwice, st.integers(1, 30)),
        st.builds(Withdraw, st.integers(0, 60)),
        st.just(Close()),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=commands, every=st.integers(1, 7))
def test_live_rebuilt_snapshot_and_replay_agree(commands: list[Any], every: int) -> None:
    cfg = dataclasses.replace(config(), snapshots=SnapshotPolicy(every=every))
    plain = config()

    async def scenario() -> None:
        store = MemoryStore()
        versions = []
        async with Signal(cfg, store=store, telemetry=None) as live:
            handle = await live.create("x")
            for command in commands:
                with contextlib.suppress(CommandRejected):
                    await handle.handle_command(command)
                versions.append((handle.version, handle.state))
            await live.drain()
            final = (handle.state, handle.version)
            replayed = {v: (await live.state_at("x", version=v)).state for v, _ in versions}
        for version, state in versions:
            assert replayed[version] == state
        async with Signal(plain, store=store, telemetry=None) as from_events:
            rebuilt = await from_events.aggregate("x")
            assert (rebuilt.state, rebuilt.version) == final
        async with Signal(cfg, store=store, telemetry=None) as from_snapshot:
            restored = await from_snapshot.aggregate("x")
            assert (restored.state, restored.version) == final
            snapshot = await store.load_snapshot("account", "x")
            expected_hit = snapshot is not None
            assert from_snapshot.pool_stats.snapshot_hits == int(expected_hit)
            if snapshot is not None:
                assert snapshot.version <= final[1]
                assert final[1] - snapshot.version < every + 2  # at most one command behind

    asyncio.run(scenario())
