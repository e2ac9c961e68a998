"""Instructions per command on ``MemoryStore``, counted by valgrind's callgrind.

::

    .venv/bin/python benchmarks/count_instructions.py [--carts 1500] [--cache 1000] [--no-telemetry]

Wall-clock figures on a shared machine move by ±10% from run to run; an instruction count does
not move at all, so a change of 1% shows. The script runs the cart workload (one client, five
commands per cart, the same code path as ``bench_memory.py``) for ``--carts`` carts and for
twice as many, each in a fresh interpreter under callgrind, and prints the difference divided
by the extra commands: start-up, imports and the first carts cancel out. Instructions are not
time (a cache miss costs more than an addition), so judge speed with the benchmarks and use this
to compare two versions of the code.

Needs valgrind (Debian: ``apt install valgrind``); a run takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys

from workload import CART, COMMANDS_PER_CART, run_cart

from eventsignal import Signal
from eventsignal.stores import MemoryStore
from eventsignal.telemetry import log_telemetry

_COLLECTED = re.compile(r"Collected : (\d+)")


async def work(carts: int, cache: int, telemetry: bool) -> None:
    """Open ``carts`` carts and send each its commands, one at a time."""
    hook = log_telemetry if telemetry else None
    async with Signal(CART, store=MemoryStore(), pool_size=cache, telemetry=hook) as signal:
        for number in range(carts):
            await run_cart(signal, f"cart-{number}", number)


def instructions(carts: int, cache: int, telemetry: bool) -> int:
    """What a fresh interpreter running ``carts`` carts executes, as callgrind counts it."""
    quiet = [] if telemetry else ["--no-telemetry"]
    child = [sys.executable, __file__, f"--work={carts}", f"--cache={cache}", *quiet]
    finished = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *child],
        capture_output=True,
        text=True,
        check=False,
    )
    found = _COLLECTED.search(finished.stderr)
    if finished.returncode != 0 or found is None:
        raise SystemExit(f"the run under callgrind failed:\n{finished.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=1500)
    parser.add_argument("--cache", type=int, default=1000, help="pool size")
    parser.add_argument("--no-telemetry", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100 carts, to check it runs")
    parser.add_argument("--work", type=int, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    telemetry = not args.no_telemetry
    if args.work is not None:
        asyncio.run(work(args.work, args.cache, telemetry))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt install valgrind)")
    carts = 100 if args.quick else args.carts
    few = instructions(carts, args.cache, telemetry)
    many = instructions(2 * carts, args.cache, telemetry)
    per_command = (many - few) / (carts * COMMANDS_PER_CART)
    print(
        f"python {sys.version.split()[0]}, MemoryStore, one client, pool size {args.cache}, "
        f"telemetry {'log_telemetry' if telemetry else 'None'}"
    )
    print(f"instructions per command: {per_command:,.0f} ({carts:,} carts against {2 * carts:,})")


if __name__ == "__main__":
    main()
