"""The cart web app over HTTP, against plain uvicorn as the ceiling, driven by ``wrk``.

Three servers, each in its own process on a free port, each measured at 16 and 64 keep-alive
connections (``--connections``):

* ``uvicorn``: plain uvicorn, its defaults, serving a trivial Starlette page. The ceiling: no
  Python web server on this machine does less per request.
* ``cart server``: the same trivial page served the way ``python -m eventsignal.cart`` serves
  (its listening socket, its request deadline); the ratio to the ceiling is what the cart's
  server setup costs, and should be about 1.0x.
* ``cart app``: ``python -m eventsignal.cart`` on a SQLite file in a temp folder, ``GET`` of a
  cart holding three products (the aggregate from the pool, the page rendered by Jinja).

Run it with::

    apt-get install wrk    # Debian's load generator
    python benchmarks/bench_web.py [--seconds 5] [--repeats 3] [--connections 16,64]

Measurements are taken round robin, ``--repeats`` rounds; the tables show medians, and a ratio
is the median over rounds of the ratio within a round (so drifting load from other work hits
both sides alike). wrk runs with one thread, leaving the other cores to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from eventsignal.cart.server import listen, server_config

HERE = str(Path(__file__).parent)
PAGE = "<!doctype html><title>ceiling</title><p>" + "A trivial page. " * 20 + "</p>"


async def trivial_page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


ceiling = Starlette(routes=[Route("/", trivial_page)])


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p99_ms: float


@dataclass
class Row:
    label: str
    results: list[Result] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return statistics.median(r.requests_per_second for r in self.results)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)


# Servers


def serve_with_cart_server() -> None:
    """Serve :data:`ceiling` exactly as the cart's server serves the cart app."""
    listener = listen("127.0.0.1", 0)
    print(f"serving on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    asyncio.run(uvicorn.Server(server_config(ceiling)).serve(sockets=[listener]))


@contextlib.contextmanager
def running(
    command: Sequence[str],
    address: re.Pattern[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Run a server until the block ends; yields its base URL, read from its output."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = address.search(line)
            if found:
                yield found.group(1)
                return
        raise RuntimeError(f"{' '.join(command[1:])} did not print its address")
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextlib.contextmanager
def plain_uvicorn() -> Iterator[str]:
    command = [sys.executable, "-m", "uvicorn", "--app-dir", HERE, "bench_web:ceiling"]
    command += ["--port", "0", "--log-level", "info", "--no-access-log"]
    with running(command, re.compile(r"running on (http://127\.0\.0\.1:\d+)")) as url:
        yield url + "/"


@contextlib.contextmanager
def cart_server() -> Iterator[str]:
    command = [sys.executable, "-c", "import bench_web; bench_web.serve_with_cart_server()"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    with running(command, re.compile(r"serving on (http://127\.0\.0\.1:\d+)"), env=env) as url:
        yield url + "/"


@contextlib.contextmanager
def cart_app() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        command = [sys.executable, "-m", "eventsignal.cart", "--port", "0"]
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder}/cart.db"}
        address = re.compile(r"Open (http://127\.0\.0\.1:\d+)/")
        with running(command, address, cwd=folder, env=env) as url:
            yield _fill_a_cart(url)


def _fill_a_cart(url: str) -> str:
    """A cart with three products; returns its page's URL."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/carts")
        created = connection.getresponse()
        created.read()
        cart = created.getheader("location")
        assert created.status == 303, created.status
        assert cart is not None
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for sku, price in (("apple", 120), ("pear", 95), ("fig", 250)):
            body = urllib.parse.urlencode({"sku": sku, "quantity": 2, "price": price})
            connection.request("POST", f"{cart}/add", body, form)
            added = connection.getresponse()
            added.read()
            assert added.status == 303, added.status
    finally:
        connection.close()
    return url + cart


# Load


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def load(url: str, connections: int, seconds: int) -> Result:
    """One wrk run: requests per second and the 99th percentile latency."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if rate is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's report:\n{out}")
    if errors is not None:
        raise RuntimeError(f"{url} answered with errors under load:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return Result(float(rate.group(1)), float(p99.group(1)) * scale)


SERVERS = {"uvicorn": plain_uvicorn, "cart server": cart_server, "cart app": cart_app}


def measure(args: argparse.Namespace) -> dict[int, list[Row]]:
    tables = {c: [Row(f"{name} c={c}") for name in SERVERS] for c in args.connections}
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(start()) for start in SERVERS.values()]
        for url in urls:
            if args.warmup:
                load(url, max(args.connections), args.warmup)
        for _ in range(args.repeats):
            for connections, rows in tables.items():
                for url, row in zip(urls, rows, strict=True):
                    row.results.append(load(url, connections, args.seconds))
    return tables


def paired_ratio(ours: Row, ceiling: Row) -> float:
    ratios = [
        a.requests_per_second / b.requests_per_second
        for a, b in zip(ours.results, ceiling.results, strict=True)
    ]
    return statistics.median(ratios)


def report(tables: dict[int, list[Row]]) -> None:
    rows = [row for table in tables.values() for row in table]
    width = max(len(row.label) for row in rows)
    heads = f"{'requests/s':>11}  {'p99 ms':>8}  {'spread of requests/s':>22}"
    print(f"{'configuration':<{width}}  {heads}")
    for row in rows:
        rates = [r.requests_per_second for r in row.results]
        spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
        figures = f"{row.requests_per_second:>11,.0f}  {row.p99_ms:>8.1f}  {spread:>22}"
        print(f"{row.label:<{width}}  {figures}")
    print()
    for connections, (plain, server, app) in tables.items():
        print(f"ratio cart server c={connections} to uvicorn: {paired_ratio(server, plain):.2f}x")
        print(f"ratio cart app c={connections} to uvicorn: {paired_ratio(app, plain):.2f}x")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="a wrk run per server first")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs per configuration")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[16, 64],
        help="comma-separated numbers of keep-alive connections (default: 16,64)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run that only checks the script works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.repeats = 1, 0, 1
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not wrk_available():
        print("wrk is not installed, so nothing was measured: apt-get install wrk")
        return
    load_average = os.getloadavg()
    print("# the cart web app vs plain uvicorn, driven by wrk")
    print(
        f"python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {' '.join(f'{n:.2f}' for n in load_average)}"
    )
    print(
        f"wrk -t1 --latency, {args.seconds} s per run after a {args.warmup} s warm-up, "
        f"median of {args.repeats}; {', '.join(map(str, args.connections))} connections"
    )
    print()
    report(measure(args))


if __name__ == "__main__":
    main()
