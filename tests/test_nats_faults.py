"""A three-server JetStream cluster keeps every acknowledged command through crashes and pauses.

Three writer processes send commands to shared aggregates (conflicts retried) on a
three-replica stream while the test SIGKILLs the stream's leader, restarts it, SIGKILLs a
follower and restarts it; and, in a second run, SIGSTOPs the leader for longer than an election
takes and resumes it. After each run :func:`nats_faults.check` holds: acknowledged commands
stored exactly once, unknown outcomes whole or absent and never twice, versions without gaps, no
lost update, and a subscription's read model equal to the fold of the stream.

One round of each runs by default; ``EVENTSIGNAL_FAULT_ROUNDS=5`` runs five, and adds a third
run: the leader and then a second server SIGKILLed (no quorum left) and both restarted.
``benchmarks/bench_nats_faults.py`` prints failover times and outcome counts. Run with ``-s`` to
see each run's figures here too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import uuid4

import pytest
from nats_faults import kill_leader_and_follower, kill_leader_then_follower, pause_leader, run
from nats_servers import NatsCluster, start_cluster

pytestmark = pytest.mark.nats

EXTENDED = "EVENTSIGNAL_FAULT_ROUNDS" in os.environ
ROUNDS = int(os.environ.get("EVENTSIGNAL_FAULT_ROUNDS", "1"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A cluster of this module's own: its servers get killed and paused."""
    cluster = start_cluster(tmp_path_factory.mktemp("nats-faults"))
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_killing_the_leader_then_a_follower_loses_nothing(cluster: NatsCluster) -> None:
    for n in range(ROUNDS):
        record = await run(
            cluster, f"faults_{uuid4().hex}", f"kill {n + 1}", kill_leader_then_follower
        )
        print(record.summary(), dict(record.errors()))
        assert record.outcomes()["ok"] > 100


async def test_pausing_the_leader_past_an_election_loses_nothing(cluster: NatsCluster) -> None:
    for n in range(ROUNDS):
        record = await run(cluster, f"faults_{uuid4().hex}", f"pause {n + 1}", pause_leader)
        print(record.summary(), dict(record.errors()))
        assert record.outcomes()["ok"] > 100


@pytest.mark.skipif(
    not EXTENDED, reason="a longer run: set EVENTSIGNAL_FAULT_ROUNDS (1 or more) to run it"
)
async def test_losing_the_quorum_then_restarting_loses_nothing(cluster: NatsCluster) -> None:
    for n in range(ROUNDS):
        stream = f"faults_{uuid4().hex}"
        record = await run(cluster, stream, f"quorum {n + 1}", kill_leader_and_follower)
        print(record.summary(), dict(record.errors()))
        assert record.outcomes()["ok"] > 50
