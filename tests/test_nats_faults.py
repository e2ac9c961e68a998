"""A three-server JetStream cluster keeps every acknowledged command through crashes and pauses.

Three writer processes send commands to shared aggregates (conflicts retried) on a
three-replica stream while the test SIGKILLs the stream's leader, restarts it, SIGKILLs a
follower and restarts it; and, in a second run, SIGSTOPs the leader for longer than an election
takes and resumes it. After each run :func:`nats_faults.check` holds: acknowledged commands
stored exactly once, unknown outcomes whole or absent and never twice, versions without gaps, no
lost update, and a subscription's read model equal to the fold of the stream.

One round of each runs by default; ``EVENTSIGNAL_FAULT_ROUNDS=5`` runs five, and
``benchmarks/bench_nats_faults.py`` prints failover times and outcome counts. Run with ``-s`` to
see each run's figures here too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import uuid4

import pytest
from nats_faults import kill_leader_then_follower, pause_leader, run
from nats_servers import NatsCluster, start_cluster

pytestmark = pytest.mark.nats

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
