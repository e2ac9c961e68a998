"""Property: however commands arrive, the live state equals the state rebuilt from the store."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from accounts import Close, Deposit, DepositTwice, Withdraw, config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import CommandRejected, Signal
from eventsignal.stores import MemoryStore

commands = st.one_of(
    st.builds(Deposit, st.integers(-5, 50)),
    st.builds(DepositTwice, st.integers(-5, 50)),
    st.builds(Withdraw, st.integers(0, 80)),
    st.just(Close()),
)
steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), commands), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, pool_size=st.integers(1, 4), concurrent=st.booleans())
def test_live_state_equals_rebuilt_state(
    steps: list[tuple[str, Any]], pool_size: int, concurrent: bool
) -> None:
    async def scenario() -> None:
        store = MemoryStore()
        ids = sorted({aggregate_id for aggregate_id, _ in steps} | {"a"})
        async with Signal(config(), store=store, pool_size=pool_size, telemetry=None) as live:
            handles = {i: await live.create(i) for i in ids}

            async def send(aggregate_id: str, command: Any) -> None:
                with contextlib.suppress(CommandRejected):
                    await live.handle_command(aggregate_id, command)

            if concurrent:
                await asyncio.gather(*(send(i, c) for i, c in steps))
            else:
                for i, c in steps:
                    await send(i, c)
            observed = {i: (h.state, h.version) for i, h in handles.items()}
        async with Signal(config(), store=store, telemetry=None) as rebuilt:
            for i in ids:
                again = await rebuilt.aggregate(i)
                assert (again.state, again.version) == observed[i]
                assert again.state.balance >= 0

    asyncio.run(scenario())
