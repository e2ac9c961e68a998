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


def test_otel_benchmark_prints_the_idle_and_sdk_costs() -> None:
    out = run_script("bench_otel.py", "--quick", "--clients", "8")
    for clients in (1, 8):
        for label in ("no provider", "SDK"):
            pattern = rf"ratio otel {label} / plain c={clients}: \d+\.\d+x per CPU second"
            assert re.search(pattern, out), out
        assert re.search(rf"SDK cost per command at c={clients}: -?\d+\.\d us", out), out


def test_codecs_benchmark_prints_each_codec_against_none() -> None:
    out = run_script("bench_codecs.py", "--quick", "--clients", "4")
    for store in ("memory", "sqlite"):
        for codec in ("aes", "zstd", "zstd\\+aes"):
            pattern = rf"ratio {store} {codec} / none: \d+\.\d+x per CPU second"
            assert re.search(pattern, out), out


def test_rotation_benchmark_prints_commands_while_re_encrypting() -> None:
    out = run_script("bench_rotation.py", "--quick", "--clients", "4")
    for store in ("memory", "sqlite"):
        for mode in ("rotating", "paced"):
            pattern = rf"ratio {store} {mode} / steady: \d+\.\d+x wall-clock, re-encrypting"
            assert re.search(pattern, out), out


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


@pytest.mark.postgres
def test_append_server_benchmark_prints_both_backend_costs() -> None:
    out = run_script("bench_append_server.py", "--quick")
    assert re.search(r"eventsignal_append, 64 requests: [\d.]+ ms of backend CPU", out), out
    assert re.search(r"raw INSERT, 64 rows: [\d.]+ ms of backend CPU", out), out
    assert re.search(r"ratio append to INSERT, backend CPU: \d+\.\dx", out), out


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
    out = run_script("bench_nats.py", "--quick", "--clients", "8", "--events-per-command", "0")
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
    for setup in ("1 node", "3 nodes replicas=3"):
        catch_up = rf"catch-up {setup}: SubscriptionRunner on NatsStore [\d,]+ events/s"
        assert re.search(catch_up, out), out
        bare = rf"catch-up {setup}: bare nats-py ordered consumer [\d,]+ messages/s"
        assert re.search(bare, out), out
        assert re.search(rf"ratio nats {setup} catch-up to bare consumer: \d+%", out), out
    for node in ("sync always", "periodic fsync"):
        latency = rf"nats 1 node {node}: live latency append->handler median [\d.]+ ms, p99"
        assert re.search(latency, out), out


@pytest.mark.postgres
@pytest.mark.nats
def test_publishing_benchmark_prints_relay_ratios_and_latency() -> None:
    out = run_script("bench_publishing.py", "--quick")
    for sink in ("jetstream", "redis"):
        assert re.search(rf"{sink}: relay from postgres [\d,]+ events/s", out), out
        assert re.search(rf"ratio relay {sink} to bare client: \d+\.\d\dx", out), out
        assert re.search(
            rf"{sink}: append->broker latency at 1,000 events/s: median [\d.]+ ms", out
        )


@pytest.mark.nats
def test_nats_faults_benchmark_prints_failover_and_outcomes() -> None:
    out = run_script("bench_nats_faults.py", "--quick")
    for fault in ("SIGKILL of the leader", "SIGKILL of the follower"):
        assert re.search(rf"{fault}: failover median \d+\.\d s, worst \d+\.\d s", out), out
        assert re.search(RATIO.format(f"{fault} failover to election timeout"), out), out
    assert re.search(r"commands: [\d,]+ acknowledged, [\d,]+ unknown outcome", out), out


def test_web_benchmark_prints_both_servers_or_says_wrk_is_missing() -> None:
    out = run_script("bench_web.py", "--quick", "--connections", "4")
    if shutil.which("wrk") is None:  # the benchmark's instructions install it, not the tests
        assert "wrk is not installed, so nothing was measured: apt-get install wrk" in out
        return
    for label in ("uvicorn c=4", "cart server c=4", "cart app c=4"):
        assert re.search(rf"{label}\s+[\d,]+\s+[\d.]+\s", out), out
    for name in ("cart server c=4", "cart app c=4"):
        assert re.search(rf"ratio {name} to uvicorn: \d+\.\d\dx", out), out


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_count_prints_instructions_per_command() -> None:
    out = run_script("count_instructions.py", "--quick")
    assert re.search(r"instructions per command: [\d,]+ \(100 carts against 200\)", out), out


@pytest.mark.nats
def test_nats_benchmark_prints_the_cost_of_atomic_batches() -> None:
    out = run_script(
        "bench_nats.py",
        *("--quick", "--clients", "2", "--no-throughput", "--no-catch-up"),
        *("--events-per-command", "3"),
    )
    assert "commands of 3 events" in out, out
    for setup in ("1 node, sync_interval: always", "1 node, periodic fsync", "3 nodes, replicas=3"):
        for layout in ("one message per event", "one message per command"):
            label = f"NatsStore {setup}, {layout} c=2"
            assert re.search(rf"{re.escape(label)}\s+[\d,]+\s", out), out
        name = f"nats c=2 NatsStore {setup}: one message per command to atomic batch"
        assert re.search(RATIO.format(re.escape(name)), out), out
    assert "catch-up:" not in out


@pytest.mark.postgres
def test_command_options_benchmark_prints_the_cost_of_keys_and_own_writes() -> None:
    out = run_script("bench_command_options.py", "--quick", "--clients", "4")
    for backend in ("sqlite", "postgres"):
        for option in ("keyed", "own writes"):
            assert re.search(RATIO.format(f"{backend} {option} to plain c=4"), out), out


def test_privacy_benchmark_prints_personal_against_plain() -> None:
    out = run_script("bench_privacy.py", "--quick", "--clients", "4")
    for store in ("memory", "sqlite"):
        assert re.search(rf"ratio {store} personal / plain: \d+\.\d+x per CPU second", out), out


@pytest.mark.postgres
def test_browser_benchmark_prints_the_first_page_time_and_its_ratio() -> None:
    out = run_script("bench_browser.py", "--quick")
    for backend in ("sqlite", "postgres"):
        assert re.search(
            rf"{backend}: first page of a 2,000-event stream: [\d.]+ ms "
            r"\(target < 1,000 ms: (met|NOT met)\)",
            out,
        ), out
        assert re.search(RATIO.format(f"{backend} first page to store page read"), out), out


@pytest.mark.postgres
def test_tenants_benchmark_prints_the_ratio_to_the_default_tenant() -> None:
    out = run_script("bench_tenants.py", "--quick", "--clients", "8", "--tenants", "4")
    for label in ("4 tenants c=8", "4 tenants c=8 as application role"):
        assert re.search(rf"ratio {label} to default tenant c=8: \d+\.\d+x", out), out


@pytest.mark.postgres
def test_dcb_benchmark_prints_its_ratios_and_the_hot_boundary() -> None:
    out = run_script("bench_dcb.py", "--quick", "--clients", "4")
    assert re.search(RATIO.format(re.escape("dcb c=1 vs peer")), out), out
    assert re.search(r"ratio dcb c=4 disjoint to plain aggregate commands c=4: \d+%", out), out
    for side in ("eventsignal", "eventsourcing"):
        assert re.search(
            rf"hot boundary c=4: {side}: [\d,]+ successes/s, conflict rate \d+%", out
        ), out
