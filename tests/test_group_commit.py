"""Group commit with two batches in flight: order, exclusion and settling, against a fake
database whose commits take random time and sometimes fail."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from eventsignal.stores.sql.batching import AppendOutcome, AppendRequest, GroupCommit


def _pipelined(request: AppendRequest) -> bool:
    return not request.tenant  # as a store whose other tenants take another session


class FakeDatabase:
    """Records each batch as the arrival numbers of its requests, and what was in flight."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.batches: list[list[int]] = []
        self.flying: list[list[AppendRequest]] = []
        self.number: dict[int, int] = {}

    async def commit(self, requests: list[AppendRequest]) -> list[AppendOutcome]:
        alone = not all(_pipelined(r) for r in requests)
        assert not (alone and self.flying), "a batch that cannot overlap ran beside another"
        assert len(self.flying) < 2
        streams = {(r.tenant, r.aggregate_id) for flying in self.flying for r in flying}
        assert not any((r.tenant, r.aggregate_id) in streams for r in requests)
        self.batches.append([self.number[id(r)] for r in requests])
        self.flying.append(requests)
        try:
            await asyncio.sleep(self.rng.random() * 0.003)
            if self.rng.random() < 0.05:
                raise RuntimeError("the whole batch failed")
            return [[self.number[id(r)]] for r in requests]
        finally:
            self.flying.remove(requests)


async def _run(seed: int) -> None:
    rng = random.Random(seed)
    database = FakeDatabase(rng)
    group = GroupCommit(
        database.commit, max_batch=rng.choice([1, 7, 50, 500]), pipelined=_pipelined
    )
    futures: list[asyncio.Future[Sequence[int]]] = []
    for _ in range(12):
        for _ in range(rng.choice([0, 1, 3, 40, 100])):
            number = len(futures)
            tenant = "other" if rng.random() < 0.1 else ""
            shared = rng.random() < 0.2  # some name an aggregate named before
            aggregate = f"n{rng.randrange(number + 1)}" if shared else f"n{number}"
            request = AppendRequest("thing", aggregate, 0, [], tenant=tenant)
            database.number[id(request)] = number
            futures.append(group.append(request))
        await asyncio.sleep(rng.random() * 0.002)
    await asyncio.wait_for(group.close(), 10)
    assert all(future.done() for future in futures)
    sent = [number for batch in database.batches for number in batch]
    assert sent == list(range(len(futures)))  # every request once, in arrival order
    for number, future in enumerate(futures):
        if future.exception() is None:
            assert future.result() == [number]


@pytest.mark.parametrize("seed", range(20))
async def test_batches_keep_arrival_order_and_never_overlap_what_must_run_alone(seed: int) -> None:
    await _run(seed)


async def test_many_appends_at_once_are_split_over_two_batches_in_flight() -> None:
    database = FakeDatabase(random.Random(1))
    database.rng.random = lambda: 0.5  # type: ignore[method-assign]  # no failures
    group = GroupCommit(database.commit, pipelined=_pipelined)
    requests = [AppendRequest("thing", f"a{n}", 0, []) for n in range(64)]
    for n, request in enumerate(requests):
        database.number[id(request)] = n
    await asyncio.gather(*(group.append(request) for request in requests))
    assert database.batches == [list(range(32)), list(range(32, 64))]


async def test_a_batch_naming_an_aggregate_in_flight_waits_for_it() -> None:
    database = FakeDatabase(random.Random(1))
    database.rng.random = lambda: 0.5  # type: ignore[method-assign]
    group = GroupCommit(database.commit, pipelined=_pipelined)
    first = AppendRequest("thing", "a", 0, [])
    then = AppendRequest("thing", "a", 1, [])
    database.number.update({id(first): 0, id(then): 1})
    one = group.append(first)
    await asyncio.sleep(0)  # the first batch is in flight
    two = group.append(then)
    await asyncio.gather(one, two)  # the fake asserts they never overlapped
    assert database.batches == [[0], [1]]
