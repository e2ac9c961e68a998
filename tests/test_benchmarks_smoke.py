"""The benchmark scripts still run: each one in its tiny ``--quick`` mode.

Timings on a shared machine prove nothing, so these tests only check that every measurement ran
and printed its ratio line with a number (``n/a`` means a side did not run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RATIO = r"ratio {}: \d+\.\dx"


def run_script(script: str, *options: str) -> str:
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def test_memory_benchmark_prints_both_libraries_and_ratios() -> None:
    out = run_script("bench_memory.py", "--quick", "--clients", "8")
    assert "cores" in out
    assert "python 3." in out
    for label in ("eventsignal c=8", "eventsignal c=8 telemetry=None", "eventsourcing c=8"):
        assert label in out
    for name in ("memory c=1", "memory c=8", "memory c=8 telemetry=None"):
        assert re.search(RATIO.format(re.escape(name)), out), out


def test_pool_benchmark_prints_the_overhead_per_live_aggregate() -> None:
    out = run_script("bench_pool.py", "--quick")
    assert re.search(r"state per aggregate \(a cart of three products\): [\d,]+ B", out), out
    assert re.search(
        r"pool overhead per live aggregate: -?[\d,]+ B beyond its state "
        r"\(target <= 1,024 B: (met|NOT met)\)",
        out,
    ), out


@pytest.mark.postgres
def test_stores_benchmark_prints_throughput_ceiling_and_rebuild_ratios() -> None:
    out = run_script("bench_stores.py", "--quick", "--clients", "8")
    for name in ("sqlite c=1", "sqlite c=8", "postgres c=1", "postgres c=8"):
        assert re.search(RATIO.format(re.escape(name)), out), out
    for backend in ("sqlite", "postgres"):
        assert re.search(RATIO.format(f"rebuild {backend}"), out), out
    assert re.search(r"raw psycopg multi-row INSERT, 64 rows per transaction: [\d,]+ rows/s", out)
    assert re.search(r"ratio postgres c=8 events/s to raw INSERT ceiling: \d+%", out), out
    assert re.search(r"raw psycopg COPY, 64 rows per transaction: [\d,]+ rows/s", out), out
    assert re.search(r"ratio postgres c=8 events/s to raw COPY ceiling: \d+%", out), out
    assert re.search(r"bare psycopg read of \(version, data\), same rows: [\d.,]+ ms", out), out
    assert re.search(RATIO.format("rebuild postgres to bare read"), out), out


def test_profiler_prints_the_costliest_functions_of_the_command_path() -> None:
    out = run_script("profile_commands.py", "--seconds", "0.2", "--top", "5")
    assert re.search(r"memory c=1: [\d,]+ commands", out), out
    assert "application.py" in out


@pytest.mark.postgres
def test_subscriptions_benchmark_prints_catch_up_and_latency() -> None:
    out = run_script("bench_subscriptions.py", "--quick")
    for backend in ("sqlite", "postgres"):
        assert re.search(rf"{backend}: catch-up \(trivial handler\) [\d,]+ events/s", out), out
        assert re.search(rf"{backend}: live latency append->handler median [\d.]+ ms, p99", out)


@pytest.mark.postgres
def test_snapshots_benchmark_prints_both_paths() -> None:
    out = run_script("bench_snapshots.py", "--quick")
    for backend in ("sqlite", "postgres"):
        assert re.search(rf"{backend}\s+3,000\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+x", out), out


@pytest.mark.postgres
@pytest.mark.nats
def test_nats_benchmark_prints_throughput_costs_and_catch_up() -> None:
    out = run_script("bench_nats.py", "--quick", "--clients", "8")
    for label in (
        "NatsStore 1 node, sync_interval: always c=8",
        "NatsStore 1 node, periodic fsync c=8",
        "NatsStore 3 nodes, replicas=3 c=8",
        "PostgresStore c=8",
    ):
        assert re.search(rf"{re.escape(label)}\s+[\d,]+\s", out), out
    for clients in (1, 8):
        for name in ("sync always to periodic", "replicas=3 to 1 node", "sync always to postgres"):
            assert re.search(RATIO.format(re.escape(f"nats c={clients} {name}")), out), out
    assert re.search(r"catch-up: SubscriptionRunner on NatsStore [\d,]+ events/s", out), out
    assert re.search(r"catch-up: bare nats-py ordered consumer [\d,]+ messages/s", out), out
    assert re.search(r"ratio nats catch-up to bare consumer: \d+%", out), out


def test_web_benchmark_prints_both_servers_or_says_wrk_is_missing() -> None:
    out = run_script("bench_web.py", "--quick", "--connections", "4")
    if shutil.which("wrk") is None:  # the benchmark's instructions install it, not the tests
        assert "wrk is not installed, so nothing was measured: apt-get install wrk" in out
        return
    for label in ("uvicorn c=4", "cart server c=4", "cart app c=4"):
        assert re.search(rf"{label}\s+[\d,]+\s+[\d.]+\s", out), out
    for name in ("cart server c=4", "cart app c=4"):
        assert re.search(rf"ratio {name} to uvicorn: \d+\.\d\dx", out), out


@pytest.mark.postgres
def test_dcb_benchmark_prints_its_ratios_and_the_hot_boundary() -> None:
    out = run_script("bench_dcb.py", "--quick", "--clients", "4")
    assert re.search(RATIO.format(re.escape("dcb c=1 vs peer")), out), out
    assert re.search(r"ratio dcb c=4 disjoint to plain aggregate commands c=4: \d+%", out), out
    for side in ("eventsignal", "eventsourcing"):
        assert re.search(
            rf"hot boundary c=4: {side}: [\d,]+ successes/s, conflict rate \d+%", out
        ), out
