"""Durable subscriptions on JetStream consumers: the consumer's ack floor is the checkpoint.

:class:`~eventsignal.subscriptions.SubscriptionRunner` keeps checkpoints in SQL, so on a
:class:`~eventsignal.stores.NatsStore` it needs a second database. A :class:`JetStreamRunner`
needs none: it binds a durable pull consumer, named after the subscription, on the store's
stream, and acknowledges each message once its events are handled. The server keeps the
consumer's state, so a restarted runner, here or in another process, resumes right after the last
acknowledged message, and parked events are kept in a JetStream key-value bucket
(``<stream>_parked``).

The consumer lets one message be unacknowledged at a time (``max_ack_pending=1``). That keeps
delivery in stream order even when several processes bind the same consumer: they compete for
messages and take over from each other, but never handle two at once. The price is throughput:
one command's events per round trip, however many runners there are. Run several subscriptions
(or partition by aggregate type) when one is not enough.

Delivery is at least once: a runner that dies after handling a message but before its ack leaves
the message to be redelivered. Read-your-writes (waiting until a subscription has handled a
command) is not offered here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from inspect import isawaitable
from typing import Any

import msgspec

from eventsignal.domain.errors import (
    ConfigurationError,
    EventSerializationError,
    NotStarted,
    StoreUnavailable,
)
from eventsignal.domain.evolution import split_stored_name
from eventsignal.serialization import envelope
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.credentials import redact, scrub
from eventsignal.stores.nats import NatsStore
from eventsignal.stores.nats.wire import (
    decode_events,
    encode_token,
    head_of,
    holds_events,
    split_subject,
)
from eventsignal.stores.subscription_state import ParkedEvent, parked_event
from eventsignal.subscriptions.errors import SubscriptionNotFound, SubscriptionStopped
from eventsignal.subscriptions.lifecycle import RunnerLifecycle
from eventsignal.subscriptions.subscription import Subscription

logger = logging.getLogger("eventsignal.subscriptions")

_ACK = b"+ACK"
_TERM = b"+TERM"

_encode_parked = msgspec.json.Encoder().encode
_decode_parked = msgspec.json.Decoder(ParkedEvent).decode


class JetStreamStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One JetStream subscription as the server keeps it.

    ``position`` is the point every event has been handled up to (the consumer's ack floor);
    ``lag`` counts the stream messages (commands) not acknowledged yet, the one being handled
    included.
    """

    name: str
    position: int
    head: int
    lag: int
    in_flight: int
    parked: int


def consumer_name(subscription: str) -> str:
    """The durable consumer of a subscription: its name, encoded when it holds a dot."""
    return encode_token(subscription)


def parked_bucket(store: NatsStore) -> str:
    return f"{store.stream}_parked"


def _parked_prefix(subscription: str) -> str:
    # Key-value keys may not hold '~': the encoded token's marker becomes '='.
    return encode_token(subscription).replace("~", "=")


async def _connect(store: NatsStore) -> Any:
    """A client of its own: a runner's long pulls must not queue behind the store's requests."""
    import nats.aio.client

    async def quiet(_: Exception) -> None:
        return None

    nc: Any = nats.aio.client.Client()
    try:
        async with asyncio.timeout(store.timeout):
            await nc.connect(
                store.servers,
                connect_timeout=store.timeout,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=quiet,
            )
    except Exception as exc:
        await nc.close()
        where = ", ".join(redact(server) for server in store.servers)
        detail = scrub(f"{type(exc).__name__}: {exc}", *store.servers)
        raise StoreUnavailable(f"cannot reach NATS at {where}: {detail}") from exc
    return nc


async def _parked_bucket(js: Any, store: NatsStore, *, create: bool) -> Any:
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value(parked_bucket(store))
    except BucketNotFoundError:
        if not create:
            return None
    return await js.create_key_value(
        bucket=parked_bucket(store), history=1, replicas=store.replicas
    )


async def _read_parked(js: Any, store: NatsStore, subscription: str) -> list[ParkedEvent]:
    kv = await _parked_bucket(js, store, create=False)
    if kv is None:
        return []
    watcher = await kv.watch(f"{_parked_prefix(subscription)}.*", ignore_deletes=True)
    parked: list[ParkedEvent] = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of what is stored now
                break
            parked.append(_decode_parked(entry.value))
    finally:
        await watcher.stop()
    return sorted(parked, key=lambda p: p.position)


async def _status(js: Any, store: NatsStore, subscription: str) -> JetStreamStatus:
    from nats.js.errors import NotFoundError

    # The head first: if the consumer has nothing pending afterwards, it has passed the head.
    head = head_of((await js.stream_info(store.stream)).state.last_seq)
    try:
        info = await js.consumer_info(store.stream, consumer_name(subscription))
    except NotFoundError as exc:
        raise SubscriptionNotFound(
            f"subscription {subscription!r} has no consumer on {store!r}"
        ) from exc
    lag = info.num_pending + info.num_ack_pending
    position = head if lag == 0 else head_of(info.ack_floor.stream_seq)
    return JetStreamStatus(
        name=subscription,
        position=position,
        head=head,
        lag=lag,
        in_flight=info.num_ack_pending,
        parked=len(await _read_parked(js, store, subscription)),
    )


async def jetstream_status(store: NatsStore, subscription: str) -> JetStreamStatus:
    """Where the JetStream subscription ``subscription`` is, from the server alone.

    It needs no handler and no open store (it connects on its own), so any process can ask.
    """
    nc = await _connect(store)
    try:
        return await _status(nc.jetstream(timeout=store.timeout), store, subscription)
    finally:
        await nc.close()


async def jetstream_parked(store: NatsStore, subscription: str) -> list[ParkedEvent]:
    """The events the JetStream subscription ``subscription`` parked, in position order."""
    nc = await _connect(store)
    try:
        return await _read_parked(nc.jetstream(timeout=store.timeout), store, subscription)
    finally:
        await nc.close()


class JetStreamRunner(RunnerLifecycle):
    """Runs one :class:`Subscription` on a durable JetStream consumer until stopped.

    ``async with JetStreamRunner(subscription, store):`` binds the consumer (creating it the first
    time, from the stream's start or its end as ``subscription.start`` says) and delivers in the
    background. Handlers take ``(event)``; ``(event, tx)`` handlers need SQL and are refused.

    A failing handler is retried by negative acknowledgement with the subscription's backoff as
    the redelivery delay, up to ``max_attempts`` (counted by the runner that handles the message:
    when another one takes a message over, it counts afresh). Then the event is parked, and the
    runner either goes on (``"park"``) or hands the message back and stops (``"stop"``), raising
    :class:`SubscriptionStopped` from :meth:`wait`.

    Runners of one subscription, in this process or others, bind the same consumer and compete
    for its messages. The consumer allows one unacknowledged message (``max_ack_pending=1``), so
    they never handle two at once and the order stays the stream's: correct, but no faster than
    one runner; extra runners are for taking over, not for throughput.

    ``ack_wait`` is how long the server waits for an acknowledgement before it redelivers,
    possibly to another runner; a runner tells it the message is still being worked on while a
    slow handler runs, so only a dead or stuck runner loses its message. A stopped runner hands
    its message back at once.
    """

    def __init__(
        self, subscription: Subscription, store: NatsStore, *, ack_wait: float = 30.0
    ) -> None:
        if subscription.takes_transaction:
            raise ConfigurationError(
                f"subscription {subscription.name!r} takes (event, tx): transactional handlers "
                "need SQL checkpoints; run it with SubscriptionRunner(..., checkpoints=...)"
            )
        if subscription.partitions != 1:
            raise ConfigurationError(
                "a JetStream subscription is not partitioned: runners bound to the same "
                "consumer share its messages instead"
            )
        if ack_wait <= 0:
            raise ConfigurationError("ack_wait must be positive")
        self.subscription = subscription
        self.store = store
        self.ack_wait = ack_wait
        self.consumer = consumer_name(subscription.name)
        self.delivered = 0  # events handled successfully by this runner
        self.error: BaseException | None = None  # why the loop ended, or last failed
        self._nc: Any = None
        self._js: Any = None
        self._pull: Any = None
        self._task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._fetching = False
        self._current: Any = None  # the message being handled
        self._since = 0.0
        self._done = (0, 0)  # stream sequence, events of it already handled here
        self._attempts = (0, 0, 0)  # stream sequence, event index, failed attempts
        self._blocked: set[int] = set()  # positions a "stop" run parked, to unpark on success

    # Life cycle

    async def start(self) -> None:
        """Open the store and its consumer, then handle messages in a task of its own; a second
        call does nothing."""
        if self._task is not None:
            return
        await self.store.open()  # creates the stream if it is missing
        try:
            self._nc = await _connect(self.store)
            self._js = self._nc.jetstream(timeout=self.store.timeout)
            await self._bind()
            if self.subscription.on_failure == "stop":
                parked = await _read_parked(self._js, self.store, self.subscription.name)
                self._blocked = {p.position for p in parked}
        except BaseException:
            await self._disconnect()
            raise
        name = self.subscription.name
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"eventsignal:jetstream:{name}")
        self._keeper = asyncio.create_task(self._keep(), name=f"eventsignal:ack-wait:{name}")

    async def _bind(self) -> None:
        """Create the consumer, or bring an existing one's settings up to date, and pull on it."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import APIError, NotFoundError

        sub = self.subscription
        stream = self.store.stream
        names = sorted(sub.aggregate_names or ())
        # Server 2.9 filters on one subject only: several aggregate types read the whole stream.
        filter_subject = f"{stream}.{encode_token(names[0])}.*" if len(names) == 1 else None
        try:
            config = (await self._js.consumer_info(stream, self.consumer)).config
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=self.consumer,
                deliver_policy=DeliverPolicy.NEW if sub.start == "end" else DeliverPolicy.ALL,
            )
        # Where it starts applies once; what it delivers and how it is acknowledged, always.
        config.ack_policy = AckPolicy.EXPLICIT
        config.max_ack_pending = 1
        config.max_deliver = -1
        config.ack_wait = self.ack_wait
        config.filter_subject = filter_subject
        try:
            await self._js.add_consumer(stream, config)
        except APIError as exc:
            if exc.err_code is None:  # no verdict on the settings: the server is unwell
                raise StoreUnavailable(f"cannot bind consumer {self.consumer!r}: {exc}") from exc
            raise ConfigurationError(
                f"consumer {self.consumer!r} on {stream!r} exists with settings that cannot "
                f"become a subscription's: {exc.description}"
            ) from exc
        except Exception as exc:
            raise StoreUnavailable(f"cannot bind consumer {self.consumer!r}: {exc}") from exc
        self._pull = await self._js.pull_subscribe_bind(self.consumer, stream=stream)

    async def stop(self) -> None:
        """Stop delivering; a message fetched or being handled goes back to the server at once.

        A pull waiting for messages is let run out (``poll_interval`` at most) rather than
        cancelled: a message already on its way would reach a runner no longer listening, and
        every runner of the subscription would wait ``ack_wait`` for it.
        """
        task, keeper = self._task, self._keeper
        if task is None:
            return
        self._task = self._keeper = None
        self._stopping = True
        if not self._fetching:
            task.cancel()  # a handler (or a backoff) is interrupted; its message is handed back
        _, running = await asyncio.wait({task}, timeout=self.subscription.poll_interval + 1.0)
        if running:
            task.cancel()
        assert keeper is not None
        keeper.cancel()
        await asyncio.gather(task, keeper, return_exceptions=True)
        await self._disconnect()

    async def _disconnect(self) -> None:
        nc, pull = self._nc, self._pull
        self._nc = self._js = self._pull = None
        try:
            if pull is not None:
                await pull.unsubscribe()
            if nc is not None:
                await nc.close()
        finally:
            await self.store.close()

    async def status(self) -> JetStreamStatus:
        """:func:`jetstream_status` on this runner's connection."""
        if self._js is None:
            raise NotStarted("the runner is not started")
        return await _status(self._js, self.store, self.subscription.name)

    async def parked(self) -> list[ParkedEvent]:
        """The events this subscription parked, in position order."""
        if self._js is None:
            raise NotStarted("the runner is not started")
        return await _read_parked(self._js, self.store, self.subscription.name)

    # The loop

    async def _run(self) -> None:
        import nats.errors

        sub = self.subscription
        failures = 0
        while not self._stopping:
            try:
                self._fetching = True
                try:
                    fetched = await self._pull.fetch(1, timeout=sub.poll_interval)
                except nats.errors.TimeoutError:
                    continue
                finally:
                    self._fetching = False
                msg = fetched[0]
                if self._stopping:
                    await msg.nak()
                    return
                await self._handle(msg)
                failures = 0
                self.error = None
            except SubscriptionStopped as exc:
                self.error = exc
                logger.error("%s", exc)
                return
            except Exception as exc:
                # The server went away or a bug: keep trying, slower and slower, and say so.
                failures += 1
                self.error = exc
                logger.exception("subscription %r failed; retrying", sub.name)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))

    async def _keep(self) -> None:
        """Tell the server a slow handler's message is still being worked on."""
        tick = self.ack_wait / 3
        while True:
            await asyncio.sleep(tick)
            msg = self._current
            if msg is not None and time.monotonic() - self._since >= tick:
                try:
                    await msg.in_progress()
                except Exception:
                    logger.warning("could not extend the ack wait", exc_info=True)

    def _records(
        self, subject: str, sequence: int, headers: dict[str, str], body: bytes
    ) -> list[StoredEvent]:
        """The events of one message this subscription reads."""
        sub = self.subscription
        if not holds_events(headers) or split_subject(subject)[0] not in sub.serializers:
            return []
        records = decode_events(subject, sequence, headers, body)
        names = sub.event_names
        if names is None:
            return records
        return [r for r in records if r.name in names or split_stored_name(r.name)[0] in names]

    async def _handle(self, msg: Any) -> None:
        sequence = msg.metadata.sequence.stream
        self._current, self._since = msg, time.monotonic()
        try:
            records = self._records(msg.subject, sequence, msg.headers or {}, msg.data)
            done_at, done = self._done
            parked = False
            # A redelivery to this runner skips the events it already handled.
            for index in range(done if done_at == sequence else 0, len(records)):
                record = records[index]
                try:
                    await self._call(record)
                except Exception as exc:
                    if not await self._failed(msg, sequence, index, record, exc):
                        return
                    parked = True
                else:
                    self.delivered += 1
                    if record.position in self._blocked:
                        await self._unpark(record.position)
                self._done = (sequence, index + 1)
            await self._settle(msg, _TERM if parked else _ACK)
        except BaseException as exc:
            if not isinstance(exc, SubscriptionStopped):  # stopping has handed it back already
                await self._hand_back(msg)
            raise
        finally:
            self._current = None

    async def _call(self, record: StoredEvent) -> None:
        handler: Any = self.subscription.handler
        serializer = self.subscription.serializers[record.aggregate_name]
        if serializer.personal is not None:
            await serializer.personal.unlock(self.store, (record,))
        for data in serializer.decode_all(record):
            event = envelope(record, data)
            result = handler([event] if self.subscription.batched else event)
            if result is not None and isawaitable(result):
                await result

    async def _settle(self, msg: Any, verdict: bytes) -> None:
        """Acknowledge (or terminate) and wait for the server: then the checkpoint is stored."""
        await self._nc.request(msg.reply, verdict, timeout=self.store.timeout)

    async def _hand_back(self, msg: Any) -> None:
        try:
            await msg.nak()
        except Exception:  # the connection is gone: ack_wait hands it back instead
            logger.warning("could not hand a message back", exc_info=True)

    async def _failed(
        self, msg: Any, sequence: int, index: int, record: StoredEvent, error: Exception
    ) -> bool:
        """Retry the message later (``False``) or park the event and go on (``True``)."""
        sub = self.subscription
        if isinstance(error, StoreUnavailable):  # never the handler's fault: retry, uncounted
            logger.warning("subscription %r: %s; retrying", sub.name, error)
            await msg.nak(delay=sub.max_retry_delay)
            return False
        at, at_index, failed = self._attempts
        attempts = failed + 1 if (at, at_index) == (sequence, index) else 1
        self._attempts = (sequence, index, attempts)
        logger.warning(
            "subscription %r: attempt %d at position %d failed: %r",
            sub.name,
            attempts,
            record.position,
            error,
        )
        # A stored event that cannot be read stays so: park it at once.
        if attempts < sub.max_attempts and not isinstance(error, EventSerializationError):
            await msg.nak(delay=sub.backoff(attempts))
            return False
        text = f"{type(error).__name__}: {error}"
        await self._park(record, text, attempts)
        if sub.on_failure == "stop":
            self._blocked.add(record.position)
            await msg.nak()
            raise SubscriptionStopped(sub.name, record.position, text)
        logger.error("subscription %r parked the event at %d: %s", sub.name, record.position, text)
        return True

    # Parked events

    async def _park(self, record: StoredEvent, error: str, attempts: int) -> None:
        name = self.subscription.name
        parked = parked_event(name, record, error, attempts, time.time())
        kv = await _parked_bucket(self._js, self.store, create=True)
        await kv.put(f"{_parked_prefix(name)}.{record.position}", _encode_parked(parked))

    async def _unpark(self, position: int) -> None:
        kv = await _parked_bucket(self._js, self.store, create=True)
        await kv.delete(f"{_parked_prefix(self.subscription.name)}.{position}")
        self._blocked.discard(position)


__all__ = [
    "JetStreamRunner",
    "JetStreamStatus",
    "consumer_name",
    "jetstream_parked",
    "jetstream_status",
    "parked_bucket",
]
