"""The pytest plugin, used by test suites of their own run in a fresh pytest process: here with
this checkout, and from a scratch project that installed the built wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from eventsignal.pytest_plugin import ENV_POSTGRES

ROOT = Path(__file__).resolve().parent.parent

DOMAIN = """
import asyncio
from dataclasses import dataclass

from eventsignal import AggregateConfig, CommandRejected, Event
from eventsignal.scenarios import scenario


@dataclass(frozen=True)
class Add:
    n: int


@dataclass(frozen=True)
class Added:
    n: int


def handle(command, total):
    if command.n <= 0:
        raise CommandRejected(f"cannot add {command.n}")
    return [Added(command.n)]


def apply(total, event):
    return total + event.data.n


counter = AggregateConfig(
    name="counter", initial_state=0, command_handler=handle, event_handler=apply, events=[Added]
)
"""

SUITE = (
    DOMAIN
    + """

def test_blocking_signal_on_each_backend(eventsignal_signals):
    signal = eventsignal_signals.sync(counter, telemetry=None)
    signal.create("c")
    assert signal.handle_command("c", Add(2)) == 2
    assert eventsignal_signals.sync(counter, telemetry=None).aggregate("c").state == 2
    print("ran on", eventsignal_signals.kind, type(signal.store).__name__)


def test_async_signal_on_sqlite(eventsignal_sqlite, tmp_path):
    async def main():
        async with eventsignal_sqlite(counter, telemetry=None) as signal:
            await signal.create("c", Add(3))
            return [e.data for e in await signal.events("c")]

    assert asyncio.run(main()) == [Added(3)]
    assert list(tmp_path.glob("eventsignal-*.db"))


def test_postgres_schema_is_fresh(eventsignal_postgres):
    signal = eventsignal_postgres.sync(counter, telemetry=None)
    signal.create("c")  # would be taken if the schema were shared with another test


def test_postgres_schema_is_fresh_again(eventsignal_postgres):
    eventsignal_postgres.sync(counter, telemetry=None).create("c")


def test_scenarios():
    scenario(counter).given(Added(1)).when(Add(2)).then_state(3)
    scenario(counter).when(Add(0)).then_rejected(match="cannot add 0")


def test_a_failing_scenario_shows_a_diff():
    scenario(counter).given(Added(1)).when(Add(2)).then(Added(1), Added(2))
"""
)

LAZY = """
import sys


def test_nothing_of_eventsignal_is_loaded_before_a_fixture_is_used():
    assert "eventsignal.pytest_plugin" in sys.modules
    loaded = [m for m in sys.modules if m.startswith(("eventsignal.", "psycopg", "msgspec"))]
    assert loaded == ["eventsignal.pytest_plugin"]
"""


def _plugin_installed() -> bool:
    return any(ep.value == "eventsignal.pytest_plugin" for ep in entry_points(group="pytest11"))


def _pytest(
    python: str, project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in (env or os.environ).items() if k != ENV_POSTGRES}
    return subprocess.run(
        [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-s", *args],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _project(path: Path) -> Path:
    path.mkdir()
    (path / "test_counter.py").write_text(SUITE)
    (path / "test_lazy.py").write_text(LAZY)
    (path / "pytest.ini").write_text("[pytest]\n")  # keeps this repository's settings out
    return path


def _check(run: subprocess.CompletedProcess[str], postgres: bool) -> None:
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "1 failed" in out, out
    assert "a_failing_scenario_shows_a_diff" in out
    assert "Add on counter 'scenario-1' stored other events than expected:" in out
    assert "  - Added(n=1)" in out
    for kind, store in [("memory", "MemoryStore"), ("sqlite", "SQLiteStore")]:
        assert f"ran on {kind} {store}" in out
    if postgres:
        assert "ran on postgres PostgresStore" in out
        assert "skipped" not in out, out
    else:
        assert "no PostgreSQL for eventsignal: pass --eventsignal-postgres URL" in out
        assert "3 skipped" in out, out


def test_the_plugin_in_a_suite_of_its_own(tmp_path: Path, postgres_database: str) -> None:
    project = _project(tmp_path / "project")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    load = [] if _plugin_installed() else ["-p", "eventsignal.pytest_plugin"]
    with_postgres = _pytest(
        sys.executable,
        project,
        *load,
        f"--eventsignal-postgres={postgres_database}",
        "test_counter.py",
        env=env,
    )
    _check(with_postgres, postgres=True)
    _check(_pytest(sys.executable, project, *load, "test_counter.py", env=env), postgres=False)
    lazy = _pytest(sys.executable, project, *load, "test_lazy.py", env=env)
    assert lazy.returncode == 0, lazy.stdout + lazy.stderr


def test_the_plugin_from_the_built_wheel(tmp_path: Path, postgres_database: str) -> None:
    """A scratch project whose environment has eventsignal from the wheel only, and finds the
    plugin through the wheel's entry point."""
    wheels = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = wheels.glob("eventsignal-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"),
            *("--no-index", "--disable-pip-version-check", str(wheel)),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    # The dependencies (msgspec, pytest, psycopg) from this environment, through a path file:
    # path files in that directory are not read from there, so its own eventsignal stays out.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "shared-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import eventsignal; print(eventsignal.__file__)"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(site), where

    project = _project(tmp_path / "project")
    run = _pytest(
        python, project, f"--eventsignal-postgres={postgres_database}", "test_counter.py", env=env
    )
    _check(run, postgres=True)
    lazy = _pytest(python, project, "test_lazy.py", env=env)
    assert lazy.returncode == 0, lazy.stdout + lazy.stderr
    disabled = _pytest(python, project, "-p", "no:eventsignal", "test_counter.py", env=env)
    assert "fixture 'eventsignal_signals' not found" in disabled.stdout


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_this_suite_has_the_fixtures(kind: str, request: pytest.FixtureRequest) -> None:
    factory = request.getfixturevalue(f"eventsignal_{kind}")
    assert factory.kind == kind
    assert factory.store is factory.store
    assert factory.new_store() is not factory.store
