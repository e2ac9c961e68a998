"""Router: stable, balanced, and moving as few aggregates as possible when nodes change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from eventsignal.routing import Router

IDS = [f"order-{n}" for n in range(10_000)]
NODES = ["node-a", "node-b", "node-c", "node-d"]


def owners(router: Router) -> dict[str, str]:
    return {aggregate_id: router.node_for(aggregate_id) for aggregate_id in IDS}


def test_same_answer_in_another_process_with_another_hash_seed() -> None:
    script = (
        "import json, sys; from eventsignal.routing import Router; "
        "r = Router(sys.argv[1:]); "
        "print(json.dumps([r.node_for(f'order-{n}') for n in range(500)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script, *reversed(NODES)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    here = Router(NODES)
    assert json.loads(out) == [here.node_for(f"order-{n}") for n in range(500)]


def test_load_is_balanced() -> None:
    counts = Counter(owners(Router(NODES)).values())
    assert set(counts) == set(NODES)
    share = len(IDS) / len(NODES)
    assert all(abs(count - share) < 0.1 * share for count in counts.values()), counts


def test_a_joining_node_takes_only_its_share() -> None:
    before = owners(Router(NODES))
    after = owners(Router([*NODES, "node-e"]))
    moved = [i for i in IDS if before[i] != after[i]]
    assert all(after[i] == "node-e" for i in moved)
    assert 0.15 * len(IDS) < len(moved) < 0.25 * len(IDS)


def test_a_leaving_node_gives_away_only_its_own() -> None:
    before = owners(Router(NODES))
    after = owners(Router([n for n in NODES if n != "node-b"]))
    assert {i for i in IDS if before[i] != after[i]} == {i for i in IDS if before[i] == "node-b"}


def test_aggregate_types_route_independently() -> None:
    router = Router(NODES)
    differs = sum(router.node_for(i, "cart") != router.node_for(i, "order") for i in IDS[:1000])
    assert differs > 500


def test_long_node_names_work() -> None:
    router = Router(["x" * 100, "y" * 100])
    assert {router.node_for(i) for i in IDS[:100]} == {"x" * 100, "y" * 100}


@pytest.mark.parametrize("nodes", [[], ["a", "a"]])
def test_bad_node_lists_are_refused(nodes: list[str]) -> None:
    with pytest.raises(ValueError, match="node"):
        Router(nodes)
