"""One of several OS processes subscribing students to courses through one shared store's DCB
view, for the races of ``test_dcb_processes.py``.

Usage::

    python tests/dcb_writer.py --store {sqlite,postgres,nats} --target T --worker K
        [--hot hot] [--students 20] [--own 10] [--concurrency 8]

The worker prints ``ready`` and waits for a line on stdin, so that all start together. It then
subscribes ``--students`` students of its own to the course ``--hot`` (which every worker races
for) and ``--own`` students each to a course of one seat of its own (``own-K-N``, which no other
command touches), with ``--concurrency`` commands in flight, and prints one JSON line: the
students subscribed (with the attempts each took), the ones the hot course refused as full, and
errors, if any. A command on a disjoint boundary must never need a second attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dcb_examples import courses
from many_writer import open_store

from eventsignal import CommandRejected
from eventsignal.dcb import view


async def main(args: argparse.Namespace) -> None:
    store = open_store(args.store, args.target)
    await store.open()
    try:
        engine = courses.engine(view(store), max_attempts=10_000)
        own = [f"own-{args.worker}-{n}" for n in range(args.own)]
        for course in own:
            await engine.handle(courses.DefineCourse(course, 1))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        report: dict[str, list[object]] = {"hot": [], "own": [], "full": [], "errors": []}
        gate = asyncio.Semaphore(args.concurrency)

        async def subscribe(student: str, course: str, into: str) -> None:
            async with gate:
                try:
                    outcome = await engine.handle(courses.Subscribe(student, course))
                except CommandRejected:
                    report["full"].append(student)
                except Exception as exc:  # reported, so that the test shows it
                    report["errors"].append(f"{type(exc).__name__}: {exc}")
                else:
                    report[into].append([student, outcome.attempts])

        await asyncio.gather(
            *(subscribe(f"w{args.worker}-s{n}", args.hot, "hot") for n in range(args.students)),
            *(subscribe(f"w{args.worker}-o{n}", course, "own") for n, course in enumerate(own)),
        )
    finally:
        await store.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--hot", default="hot")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--own", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
