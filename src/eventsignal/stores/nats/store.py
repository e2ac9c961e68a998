"""An event store on NATS JetStream: the server enforces each aggregate's order.

All aggregates of a store live in one stream, one subject per aggregate, one message per event
(layout in :mod:`eventsignal.stores.nats.wire`, chosen per stream in
:mod:`eventsignal.stores.nats.layout`). One stream, rather than one per aggregate type, is what
gives a single global order for subscriptions: the stream sequence. The price is that one stream
has one leader in a cluster, so one store scales up, not out; run several stores (several
streams) to spread load across leaders when a global order is not needed between them.

An append is one atomic batch (a publish, for one event) whose first message carries
``Nats-Expected-Last-Subject-Sequence``: the sequence of the aggregate's newest message. The server
refuses the whole batch if anything was stored on the subject since, and that refusal becomes
:class:`~eventsignal.ConcurrencyError`. The store remembers each aggregate's
newest message (its *tip*) from its own appends and reads, so an uncontended append is a single
round trip.

Requires ``nats-py`` (``pip install eventsignal[nats]``) and a server with JetStream (2.9 or later;
2.12 or later for one message per event).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    ConcurrencyError,
    ConfigurationError,
    EventTooLarge,
    StoreNotOpen,
    StoreUnavailable,
)
from eventsignal.domain.identity import validate_id, validate_name
from eventsignal.stores.base import (
    AggregateInfo,
    Snapshot,
    StoredEvent,
    StoreLifecycle,
    StoreStats,
    check_versions,
)
from eventsignal.stores.credentials import redact, scrub
from eventsignal.stores.dcb import DCB_AGGREGATE
from eventsignal.stores.idempotency import (
    DEFAULT_RETENTION,
    CommandKey,
    KeyRetention,
    RecordedCommand,
    check_key,
)
from eventsignal.stores.nats.dcb import NatsDcb
from eventsignal.stores.nats.durability import (
    DURABILITIES,
    QUORUM,
    Durability,
    enforce,
    fsyncs_every_write,
    logger,
)
from eventsignal.stores.nats.keys import key_headers, recorded_key
from eventsignal.stores.nats.layout import (
    LAYOUTS,
    Layout,
    check_retention,
    creation_settings,
    layout_of,
)
from eventsignal.stores.nats.reading import LogReader
from eventsignal.stores.nats.requests import (
    READ_TRY,
    RETRY,
    Message,
    Stored,
    direct_answer,
    from_leader,
    leader_get,
    request,
)
from eventsignal.stores.nats.snapshots import SnapshotBucket
from eventsignal.stores.nats.subject_keys import NatsSubjectKeys
from eventsignal.stores.nats.subscriptions import MAX_BATCH, NatsSubscriptions
from eventsignal.stores.nats.wire import (
    COMMANDS,
    CONFLICTS,
    COUNT,
    CREATED,
    EVENTS,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MESSAGE_TOO_LARGE,
    SLOTS,
    VERSION,
    PubAck,
    Tip,
    batch_positions,
    decode_ack,
    decode_events,
    encode_events,
    encode_token,
    event_messages,
    first_sequence_after,
    first_version_of,
    head_of,
    message_size,
    positions_of,
    previous_command_of,
    previous_of,
    split_subject,
    subject_of,
    version_of,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

_Key = tuple[str, str]
_Message = Stored
_Outgoing = list[tuple[dict[str, str], bytes]]  # one command's messages: headers, body

_WALK = 8
"""Versions a read may fetch message by message before it opens a consumer instead."""

_READERS = 4
"""Readers kept between pages (a few subscriptions of one process reading at once)."""

_NO_RESPONDERS = "503"

_STREAM_IN_USE = 10058  # the stream exists with another configuration: use it as it is
_NO_PEERS = 10005  # no suitable peers for placement: too few servers online, for now


class _State(msgspec.Struct):
    last_seq: int = 0


class _Config(msgspec.Struct):
    max_msg_size: int = -1
    num_replicas: int = 1


class _StreamInfo(msgspec.Struct):
    state: _State | None = None
    config: _Config | None = None
    error: dict[str, Any] | None = None


_decode_info = msgspec.json.Decoder(_StreamInfo).decode


class NatsStore(NatsSubscriptions, StoreLifecycle, NatsSubjectKeys):
    """A durable :class:`~eventsignal.stores.EventStore` on one JetStream stream.

    ``stream`` names the stream and prefixes its subjects (``<stream>.<type>.<id>``); it may hold
    letters, digits, ``_`` and ``-``. The stream is created on first use with ``replicas`` copies
    (3 on a cluster for fault tolerance). ``timeout`` bounds every request to the server; a
    request that times out raises :class:`~eventsignal.StoreUnavailable`. The connection is
    pinged every ``timeout / 2`` seconds (at least half a second): one that stalls (open, but
    silent) is dropped after two pings go unanswered, within about ``1.5 * timeout``, and
    replaced, so the store recovers without being reopened; while no connection is up, requests
    fail at once and send nothing. Each event must fit in one message of the server's
    ``max_payload`` (1 MiB by default; on a stream of one message per command, all of a
    command's events together), else the store raises :class:`~eventsignal.EventTooLarge`; a
    command stores at most 1000 events (the server's limit on an atomic batch).
    ``remembered_tips`` bounds how many aggregates' newest messages are remembered; a forgotten
    one costs the next append one extra direct get.

    ``durability`` says what to do, at the first open, when an acknowledged write might not
    survive a crash (see :mod:`eventsignal.stores.nats.durability`): ``"require"`` refuses to
    open with a :class:`~eventsignal.ConfigurationError` naming what to change, ``"warn"`` logs
    a warning once, ``"ignore"`` says nothing. The server behind a URL may come back from a
    restart with other settings, so after every reconnection the store learns the stream's
    settings again before its next write and applies the policy again: under ``"require"`` a
    write is refused (nothing sent) while an acknowledgement would not be durable. An
    acknowledgement is durable when the stream has three replicas or more, or when every server
    fsyncs each write (``jetstream { sync_interval: always }``), which the store can only see
    through ``monitor``: the servers' monitoring URLs (``http://host:8222``).

    ``layout`` applies when the store creates the stream: ``"event-per-message"`` (one message
    per event, each command one atomic batch; server 2.12 or later), ``"command-per-message"``
    (one message per command: on a single server, whose atomic batches cost a few milliseconds
    each, faster for commands of several events), or ``None``: one message per event wherever the
    server allows it. A stream that exists keeps the layout it records.

    Positions are global and increasing but not contiguous (see
    :mod:`eventsignal.stores.nats.wire`).
    """

    #: Why payloads cannot be re-encrypted in place, and what to do instead.
    rewrite_refusal = (
        "JetStream messages are immutable. Keep the old key in the ring (its payloads stay "
        "readable), or copy the store (`eventsignal copy`, which carries payloads as they are) "
        "to one that can rewrite them, re-encrypt it there, and copy it back to a new stream"
    )

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        stream: str = "eventsignal",
        replicas: int = 1,
        timeout: float = 5.0,
        remembered_tips: int = 100_000,
        durability: Durability = "warn",
        monitor: str | Sequence[str] = (),
        layout: Layout | None = None,
    ) -> None:
        if not stream or encode_token(stream) != stream:
            raise ConfigurationError(
                f"stream name {stream!r} may hold letters, digits, '_' and '-' only"
            )
        if layout is not None and layout not in LAYOUTS:
            raise ConfigurationError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        self.layout = layout
        if durability not in DURABILITIES:
            raise ConfigurationError(
                f"durability must be one of {', '.join(DURABILITIES)}, not {durability!r}"
            )
        self.durability: Durability = durability
        self.monitors = [monitor] if isinstance(monitor, str) else list(monitor)
        self._durability_known = False
        self._warned: str | None = None  # the shortfall last warned of
        self._stale = False  # disconnected since the stream's settings were learnt
        self._relearning = asyncio.Lock()
        self._layout = COMMANDS
        self._snapshots = SnapshotBucket(stream, replicas)
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.replicas = replicas
        self._replicated = replicas > 1  # learnt from the stream when the store connects
        self.timeout = timeout
        self._remembered_tips = remembered_tips
        self._tips: dict[_Key, Tip] = {}
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._users = 0
        self._opening = asyncio.Lock()
        self._appends = self._events = self._messages = 0
        self._head = 0
        self._acked = 0  # the newest sequence this store was acknowledged: no read sees less
        self._watcher: Any = None
        self._watching = asyncio.Lock()
        self._followers: list[asyncio.Future[None]] = []
        self._readers: dict[int, LogReader] = {}  # by the position each stands at
        self._quiet: dict[int, int] = {}  # position -> sequence through which nothing follows it
        self._closing: set[asyncio.Task[None]] = set()
        self._init_subscriptions()

    @property
    def dcb(self) -> NatsDcb:
        """Reads and appends by query (dynamic consistency boundaries) over this store's stream."""
        return NatsDcb(self)

    def for_tenant(self, tenant: str | None) -> NoReturn:
        """Refused: a NATS stream keeps no tenants yet (see :mod:`eventsignal.stores.tenancy`)."""
        raise ConfigurationError(
            f"NatsStore keeps no tenants yet, so it has no view of tenant {tenant!r}: its "
            "subjects and keys hold no tenant; use PostgresStore, SQLiteStore or MemoryStore "
            "for a multi-tenant application"
        )

    def __repr__(self) -> str:
        return f"<NatsStore {self.stream!r} at {self._where}>"

    @property
    def _where(self) -> str:
        """The servers, without their credentials, for messages."""
        return ", ".join(redact(server) for server in self.servers)

    def _scrubbed(self, exc: BaseException) -> str:
        """A driver's error without the servers' credentials, should it quote them."""
        return scrub(f"{type(exc).__name__}: {exc}", *self.servers)

    @property
    def stats(self) -> StoreStats:
        """Counters; here every append (or creation) is one atomic batch (or one message), so
        one transaction."""
        return StoreStats(self._appends, self._events, self._messages)

    def _counted(self, events: Sequence[StoredEvent]) -> None:
        self._appends += 1
        self._events += len(events)
        self._messages += 1

    # Life cycle

    async def open(self) -> None:
        async with self._opening:
            self._users += 1
            if self._users > 1:
                return
            try:
                await self._connect()
            except BaseException:
                self._users -= 1
                raise

    async def _connect(self) -> None:
        import nats.aio.client
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        errors: list[Exception] = []  # the connection attempts' failures, for the message

        async def quiet(error: Exception) -> None:
            errors[:] = [error]

        async def disconnected() -> None:
            # It may come back as another server, or restarted with other settings: learn them
            # again before the next write (marked now, so no write slips in before).
            self._stale = True

        # Once connected the client reconnects for ever (requests meanwhile fail with
        # StoreUnavailable); the first connection gets ``timeout`` seconds. A closed socket is
        # noticed at once, a stalled one only by its missing pongs: the client's default (a
        # ping every two minutes) would leave a store stuck for six.
        nc = nats.aio.client.Client()
        try:
            async with asyncio.timeout(self.timeout):
                await nc.connect(
                    self.servers,
                    connect_timeout=self.timeout,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    ping_interval=max(self.timeout / 2, 0.5),  # type: ignore[arg-type]
                    max_outstanding_pings=2,
                    error_cb=quiet,
                    disconnected_cb=disconnected,
                )
        except Exception as exc:
            await nc.close()
            if isinstance(exc, TimeoutError):  # still trying when the time ran out: say why
                last = f": {self._scrubbed(errors[0])}" if errors else ""
                raise StoreUnavailable(
                    f"cannot reach NATS at {self._where}: no server answered within "
                    f"{self.timeout:g} seconds{last}"
                ) from exc
            raise StoreUnavailable(
                f"cannot reach NATS at {self._where}: {self._scrubbed(exc)}"
            ) from exc
        js = nc.jetstream(timeout=self.timeout)
        version = nc.connected_server_version
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.stream}.>"],
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            allow_direct=True,
            deny_delete=True,
        )
        try:
            settings = creation_settings(self.stream, (version.major, version.minor), self.layout)
        except ConfigurationError:
            await nc.close()
            raise
        for name, value in settings.items():
            setattr(config, name, value)
        try:
            try:
                info = await self._add_stream(js, config)
            except BadRequestError as exc:
                if exc.err_code != _STREAM_IN_USE:
                    raise StoreUnavailable(
                        f"cannot create stream {self.stream!r}: {self._scrubbed(exc)}"
                    ) from exc
                # It exists with other settings: it is used as it is, its layout and replicas.
                info = await js.stream_info(self.stream)
        except StoreUnavailable:
            await nc.close()
            raise
        except Exception as exc:
            await nc.close()
            raise StoreUnavailable(
                f"NATS at {self._where} has no usable JetStream: {self._scrubbed(exc)}"
            ) from exc
        self._nc = nc
        self._js = js
        self._stale = False
        try:
            replicas = self._learn(info.config)
            if not self._durability_known:
                await self._check_durability(replicas)
                self._durability_known = True
        except BaseException:
            self._nc = self._js = None
            await nc.close()
            raise

    def _learn(self, config: Any) -> int:
        """Take the stream's settings (``StreamConfig``) as they are: its replicas decide how
        reads go, its layout how writes go. Returns its replicas."""
        check_retention(self.stream, config)
        self._layout = layout_of(self.stream, config)
        replicas: int = config.num_replicas or 1
        self._replicated = replicas > 1
        return replicas

    async def _relearn(self) -> None:
        """After a reconnection: learn the stream's settings again and apply ``durability``."""
        async with self._relearning:
            if not self._stale:
                return
            from nats.js.api import StreamInfo

            # A request fails at once while not connected, so a write then fails as fast.
            reply = await self._request(f"$JS.API.STREAM.INFO.{self.stream}", b"")
            answer = json.loads(reply.data)
            if "config" not in answer:
                raise StoreUnavailable(
                    f"cannot read the settings of stream {self.stream!r} after reconnecting; "
                    f"nothing was sent: {answer.get('error')}"
                )
            info = StreamInfo.from_response(answer)
            await self._check_durability(self._learn(info.config))
            self._stale = False

    async def _add_stream(self, js: JetStreamContext, config: Any) -> Any:
        """Create the stream, waiting out a cluster that does not see enough servers yet.

        A cluster just started, or one whose servers just reconnected, may not yet count a
        replica's server as online and refuses to place the stream, and placing a replicated
        stream (electing its leader) can outlast one request's ``timeout`` on a busy cluster.
        Both pass, and creating the same stream again is harmless, so the store asks again, for
        up to three timeouts in all, rather than fail.
        """
        from nats.errors import TimeoutError as RequestTimeout
        from nats.js.errors import BadRequestError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * self.timeout
        while True:
            try:
                return await js.add_stream(config)
            except BadRequestError as exc:
                if exc.err_code != _NO_PEERS or loop.time() >= deadline:
                    raise
            except RequestTimeout:
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(RETRY * 5)

    async def _check_durability(self, replicas: int) -> None:
        """Learn whether an acknowledgement here survives a crash, and act on the answer.

        The stream's own replicas count, not the ones asked for: an existing stream is used as
        it is. A warning is not repeated while its reason stays the same.
        """
        if self.durability == "ignore":
            return
        fsync: bool | None = None
        if replicas < QUORUM and self.monitors:
            try:
                fsync = await fsyncs_every_write(self.monitors, self.timeout)
            except StoreUnavailable as exc:
                if self.durability == "require":
                    raise
                logger.warning("%r: cannot tell whether writes are durable: %s", self, exc)
                return
        self._warned = enforce(self.durability, repr(self), replicas, fsync, self._warned)

    async def close(self) -> None:
        async with self._opening:
            if self._users == 0:
                return
            self._users -= 1
            if self._users > 0:
                return
            nc, self._nc, self._js = self._nc, None, None
            watcher, self._watcher = self._watcher, None
            readers, self._readers = list(self._readers.values()), {}
            self._tips.clear()
            self._wake()  # followers re-read and learn the store is closed
            if nc is None:
                return
            try:
                for reader in readers:
                    await reader.close()
                if self._closing:
                    await asyncio.gather(*self._closing, return_exceptions=True)
                if watcher is not None:
                    await watcher.unsubscribe()
            finally:
                await nc.close()

    # Writing

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
    ) -> Sequence[int]:
        """Store the aggregate's first events, or a creation marker when there are none.

        The first message expects the subject to be empty, so of racing creators exactly one
        wins.
        """
        return await self._create(aggregate_name, aggregate_id, events, created_at, None)

    async def _create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        created_at: datetime | None,
        extra: dict[str, str] | None,
    ) -> Sequence[int]:
        subject = subject_of(self.stream, validate_name(aggregate_name), validate_id(aggregate_id))
        self._check_batch(aggregate_name, aggregate_id, 0, events)
        created = (created_at or datetime.now(UTC)).isoformat()
        if events and self._layout == EVENTS:
            messages = event_messages(aggregate_name, events, created, 0, 0)
        else:
            headers = {
                EXPECTED_LAST_SUBJECT_SEQUENCE: "0",
                VERSION: str(len(events)),
                COUNT: str(len(events)),
                CREATED: created,
            }
            messages = [(headers, encode_events(events) if events else b"")]
        if extra:  # on the command's last message: the first a walk newest first meets
            messages[-1][0].update(extra)
        ack = await self._write(aggregate_name, aggregate_id, events, messages)
        if ack.error is not None:
            if ack.error.err_code in CONFLICTS:
                raise AggregateExists(aggregate_name, aggregate_id)
            raise StoreUnavailable(f"JetStream refused to create {subject}: {ack.error}")
        key = (aggregate_name, aggregate_id)
        first = ack.seq - len(messages) + 1
        self._remember(key, Tip(ack.seq, len(events), created, first))
        self._counted(events)
        self._seen(ack.seq)
        return _positions(ack.seq, messages, events)

    async def exists(self, aggregate_name: str, aggregate_id: str) -> bool:
        if (aggregate_name, aggregate_id) in self._tips:
            return True  # aggregates are never deleted
        return await self._last_message(aggregate_name, aggregate_id) is not None

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> Sequence[int]:
        return await self._append(aggregate_name, aggregate_id, expected_version, events)

    async def _append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        extra: dict[str, str] | None = None,
        tip: Tip | None = None,
    ) -> Sequence[int]:
        """Publish one command's events after the aggregate's newest message (``tip`` when the
        caller read it, with ``extra`` headers)."""
        self._check_batch(aggregate_name, aggregate_id, expected_version, events)
        key = (aggregate_name, aggregate_id)
        if tip is None:
            tip = self._tips.get(key)
        if tip is None or tip.version != expected_version:
            newest = await self._last_message(aggregate_name, aggregate_id)
            if newest is None:
                raise AggregateNotFound(aggregate_name, aggregate_id)
            tip = newest[0]
            if tip.version != expected_version:
                raise ConcurrencyError(aggregate_name, aggregate_id, expected_version, tip.version)
        if not events:
            return []
        subject = subject_of(self.stream, aggregate_name, aggregate_id)
        if self._layout == EVENTS:
            messages = event_messages(aggregate_name, events, tip.created, tip.origin, tip.sequence)
        else:
            messages = [(tip.headers_after(len(events)), encode_events(events))]
        if extra:  # on the command's last message: the first a walk newest first meets
            messages[-1][0].update(extra)
        ack = await self._write(aggregate_name, aggregate_id, events, messages)
        if ack.error is not None:
            # The remembered tip stays: stale, it still tells a catch-up where to start reading.
            if ack.error.err_code in CONFLICTS:
                raise ConcurrencyError(aggregate_name, aggregate_id, expected_version)
            raise StoreUnavailable(f"JetStream refused the events of {subject}: {ack.error}")
        self._remember(key, Tip(ack.seq, expected_version + len(events), tip.created, tip.origin))
        self._counted(events)
        self._seen(ack.seq)
        return _positions(ack.seq, messages, events)

    # Idempotent commands (see eventsignal.stores.idempotency and .keys)

    async def append_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        """Publish the events with the key in their message's headers, expecting the newest
        message a lookup of the key has just walked from: the key is free as of that message,
        and anything stored after it makes the publish a conflict."""
        check_key(aggregate_name, aggregate_id, key.key)
        found, tip = await self._find(aggregate_name, aggregate_id, key.key, retention)
        if found is not None:
            raise CommandKeyTaken(aggregate_name, aggregate_id, key.key)
        if tip is None:
            raise AggregateNotFound(aggregate_name, aggregate_id)
        if tip.version != expected_version:
            raise ConcurrencyError(aggregate_name, aggregate_id, expected_version, tip.version)
        return await self._append(
            aggregate_name, aggregate_id, expected_version, events, key_headers(key), tip
        )

    async def create_keyed(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        key: CommandKey,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> Sequence[int]:
        check_key(aggregate_name, aggregate_id, key.key)
        return await self._create(aggregate_name, aggregate_id, events, None, key_headers(key))

    async def find_command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        key: str,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> RecordedCommand | None:
        return (await self._find(aggregate_name, aggregate_id, key, retention))[0]

    async def _find(
        self, aggregate_name: str, aggregate_id: str, key: str, retention: KeyRetention
    ) -> tuple[RecordedCommand | None, Tip | None]:
        """The command recorded under ``key``, walking the aggregate's messages newest first
        within ``retention``; and the newest message's tip (``None``: no such aggregate)."""
        newest = await self._last_message(aggregate_name, aggregate_id)
        if newest is None:
            return None, None
        tip, message = newest
        cutoff = retention.cutoff(datetime.now(UTC))
        keyed = 0
        while True:
            _, sequence, headers, _ = message
            recorded = recorded_key(headers, version_of(headers))
            if recorded is not None:
                if cutoff is not None and recorded.recorded_at < cutoff:
                    return None, tip
                if recorded.key == key:
                    return recorded, tip
                keyed += 1
                if keyed >= retention.keep:
                    return None, tip
            previous = previous_command_of(sequence, headers)
            if previous == 0:
                return None, tip
            older = await self._get({"seq": previous})
            if older is None:
                raise StoreUnavailable(f"{message[0]}: message {previous} is missing")
            message = older

    # Reading

    async def read_aggregate(
        self, aggregate_name: str, aggregate_id: str, after_version: int = 0
    ) -> Sequence[StoredEvent]:
        # What this store last knew of the aggregate; a stale copy catching up is usually at
        # exactly that version, so the newer messages start right after it.
        known = self._tips.get((aggregate_name, aggregate_id))
        newest = await self._last_message(aggregate_name, aggregate_id)
        if newest is None or newest[0].version <= after_version:
            return []
        tip, message = newest
        if tip.version - after_version > _WALK:
            start = tip.origin
            if known is not None and known.version == after_version:
                start = known.sequence + 1
            messages = [m async for m in self._scan(message[0], start, tip.sequence)]
        else:
            walked = await self._walk_back(message, after_version)
            if walked is None:  # a link that does not hold (nor may the origin): read it all
                walked = [m async for m in self._scan(message[0], 1, tip.sequence)]
            messages = walked
        return [
            event
            for subject, sequence, headers, body in messages
            for event in decode_events(subject, sequence, headers, body)
            if event.version > after_version
        ]

    async def _walk_back(self, newest: _Message, after_version: int) -> list[_Message] | None:
        """The messages of one subject from the one holding ``after_version + 1`` to ``newest``.

        Each command's first message names its predecessor (the sequence it expected), and the
        other events of a batch follow one another, so a short tail costs one direct get per
        message and no consumer. ``None`` if a link leads to another subject (a message
        published there by other code without the link).
        """
        messages = [newest]
        while True:
            _, sequence, headers, _ = messages[-1]
            previous = previous_of(sequence, headers)
            if first_version_of(headers) <= after_version + 1 or previous == 0:
                break
            message = await self._get({"seq": previous})
            if message is None:
                raise StoreUnavailable(f"{newest[0]}: message {previous} is missing")
            if message[0] != newest[0]:
                return None
            messages.append(message)
        messages.reverse()
        return messages

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> Sequence[StoredEvent]:
        """Events after ``after_position``, in stream order.

        A page that follows the previous one (``after_position`` is where it ended) continues
        on that page's reader: one pull consumer kept between pages, already streaming the next
        messages, and holding a long poll for new ones once it has caught up (see
        :mod:`eventsignal.stores.nats.reading`). A look at a few events takes direct gets; any
        other read opens a reader for the pages that follow.
        """
        if limit <= 0:
            return []
        reader = self._readers.pop(after_position, None)
        if reader is not None:
            try:
                return await self._page(reader, limit, self._last_sequence)
            except StoreUnavailable:
                pass  # the consumer is gone (expired while unread, or a server restarted)
        start = first_sequence_after(after_position)
        last = await self._last_sequence()
        if start > last:
            self._passed(after_position, last)
            return []
        if last - start < _WALK and limit <= _WALK:
            # A look at a few events (a parked one, say): not worth a consumer.
            events = await self._get_range(after_position, start, last, limit)
            if not events:
                self._passed(after_position, last)
            return events
        reader = LogReader(
            self._client(), self.stream, after_position, start, self._decode, self.timeout
        )
        await reader.start()
        asked = [last]

        async def known_last() -> int:  # asked just now: once is enough
            return asked.pop() if asked else await self._last_sequence()

        return await self._page(reader, limit, known_last)

    async def _page(
        self, reader: LogReader, limit: int, last_sequence: Callable[[], Awaitable[int]]
    ) -> list[StoredEvent]:
        """A page from ``reader``, which then waits for the next page under its new position."""
        try:
            events = await reader.page(limit, last_sequence)
        except BaseException:
            if reader.broken:
                self._retire(reader)
            else:
                self._keep_reader(reader)
            raise
        self._keep_reader(reader)
        if not events:
            self._passed(reader.position, reader.read_through)
        return events

    def _passed(self, position: int, sequence: int) -> None:
        """Note that nothing past ``position`` is stored through ``sequence``."""
        if len(self._quiet) >= _READERS * 4 and position not in self._quiet:
            self._quiet.clear()  # followers at positions long left: they re-read once
        self._quiet[position] = sequence

    def _keep_reader(self, reader: LogReader) -> None:
        readers = self._readers
        if self._nc is None:  # closed meanwhile
            self._retire(reader)
            return
        replaced = readers.pop(reader.position, None)
        if replaced is not None:
            self._retire(replaced)
        if len(readers) >= _READERS:
            self._retire(readers.pop(next(iter(readers))))
        readers[reader.position] = reader

    def _retire(self, reader: LogReader) -> None:
        """Close a reader in the background: its consumer is deleted, or expires on its own."""
        task = asyncio.get_running_loop().create_task(reader.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _get_range(
        self, after_position: int, start: int, last: int, limit: int
    ) -> list[StoredEvent]:
        """The events of messages ``start`` through ``last``, by direct gets all at once."""
        found = await asyncio.gather(*(self._get({"seq": s}) for s in range(start, last + 1)))
        out: list[StoredEvent] = []
        for message in found:
            # The stream never loses messages (deletes are denied), so a missing one is one a
            # lagging replica does not have yet: stop before it rather than skip it.
            if message is None:
                break
            out.extend(e for e in self._decode(*message) if e.position > after_position)
            if len(out) >= limit:
                break
        return out[:limit]

    def _decode(
        self, subject: str, sequence: int, headers: dict[str, str], body: bytes
    ) -> Sequence[StoredEvent]:
        """The events of one stored message: every read decodes through here."""
        return decode_events(subject, sequence, headers, body)

    async def head_position(self) -> int:
        return head_of(await self._last_sequence())

    async def aggregates(self, aggregate_name: str | None = None) -> Sequence[AggregateInfo]:
        from nats.js.api import DeliverPolicy

        if aggregate_name is None:
            subjects = f"{self.stream}.>"
        else:
            subjects = f"{self.stream}.{encode_token(validate_name(aggregate_name))}.*"
        listed: list[AggregateInfo] = []
        stop: int | None = None
        if self._replicated:
            # The consumer may sit on a replica that lags: it must read up to the newest message
            # the leader holds on these subjects, not merely to what the replica has.
            newest_of_all = await self._get({}, subjects)
            if newest_of_all is None:
                return listed
            stop = newest_of_all[1]
        newest = self._scan(
            subjects, stop=stop, policy=DeliverPolicy.LAST_PER_SUBJECT, headers_only=True
        )
        # A consumer on a replica that lags delivers a subject's last message as it knew it,
        # then, as it catches up, the newer ones: the last delivery of a subject is its newest.
        newest_of: dict[str, dict[str, str]] = {}
        async for subject, _, headers, _ in newest:
            newest_of[subject] = headers
        for subject, headers in newest_of.items():
            name, aggregate_id = split_subject(subject)
            if name == DCB_AGGREGATE:
                continue  # DCB appends belong to no aggregate
            listed.append(
                AggregateInfo(
                    aggregate_name=name,
                    aggregate_id=aggregate_id,
                    version=version_of(headers),
                    created_at=datetime.fromisoformat(headers[CREATED]),
                )
            )
        return listed

    async def wait_for_events(self, after_position: int) -> None:
        # Messages a read after this position found empty (creation markers) are no news: a
        # follower waits for a message past them, rather than wake, re-read and wake again.
        floor = max(after_position, head_of(self._quiet.get(after_position, 0)))
        if self._head > floor:
            return
        if self._watcher is None:
            await self._watch()
            # Anything stored before the watcher existed shows in the stream's state; anything
            # after is delivered to the watcher, which wakes the followers.
            head = await self.head_position()
            if head > floor or self._head > floor:
                return
        follower: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._followers.append(follower)
        try:
            await follower
        finally:
            if follower in self._followers:
                self._followers.remove(follower)

    # Snapshots

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` in ``<stream>_snapshots`` unless a newer one is there already."""
        await self._snapshots.save(self._jetstream(), snapshot)

    async def load_snapshot(self, aggregate_name: str, aggregate_id: str) -> Snapshot | None:
        return await self._snapshots.load(self._jetstream(), aggregate_name, aggregate_id)

    async def delete_snapshot(self, aggregate_name: str, aggregate_id: str) -> None:
        """Drop the aggregate's snapshot, if any (it may hold personal data now forgotten)."""
        await self._snapshots.delete(self._jetstream(), aggregate_name, aggregate_id)

    # Internals

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise StoreNotOpen(f"{self!r} is not open: call 'await store.open()' first")
        return self._js

    def _check_batch(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
    ) -> None:
        check_versions(aggregate_name, aggregate_id, expected_version, events)
        limit = MAX_BATCH if self._layout == EVENTS else SLOTS
        if len(events) > limit:
            raise ConfigurationError(
                f"{aggregate_name} {aggregate_id!r}: a command stores at most {limit} events on "
                f"stream {self.stream!r} (one {'atomic batch' if limit == MAX_BATCH else 'message'}"
                f"), not {len(events)}"
            )

    async def _write(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent],
        messages: _Outgoing,
    ) -> PubAck:
        """Publish one command's messages, refused before sending if one is too large.

        The server counts headers and body against ``max_payload`` and closes the connection of
        a client that sends more, so each whole message is measured here, not only its body.
        """
        if self._stale:
            await self._relearn()
        subject = subject_of(self.stream, aggregate_name, aggregate_id)
        limit = self._client().max_payload
        largest = 0
        for index, (headers, body) in enumerate(messages):
            size = message_size(headers, body)
            if size > limit and events:
                held = events if len(messages) == 1 else [events[index]]
                raise _too_large(aggregate_name, aggregate_id, held, size, limit)
            largest = max(largest, size)
        reply = await self._request(subject, b"", writing=True, batch=messages)
        ack = decode_ack(reply.data)
        if ack.error is None:
            self._acked = max(self._acked, ack.seq)
        if ack.error is not None and ack.error.err_code == MESSAGE_TOO_LARGE and events:
            limit = await self._size_limit()
            raise _too_large(aggregate_name, aggregate_id, events, largest, limit)
        return ack

    def _client(self) -> Client:
        if self._nc is None:
            raise StoreNotOpen(f"{self!r} is not open: call 'await store.open()' first")
        return self._nc

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        *,
        writing: bool = False,
        batch: Sequence[tuple[dict[str, str], bytes]] = (),
        within: float | None = None,
    ) -> Msg:
        """A request, or with ``batch`` the messages of one command (the last one a request),
        answered within ``within`` seconds (the store's timeout unless said)."""
        import nats.errors

        nc = self._client()
        if not nc.is_connected:
            # The client would hold the message and send it once reconnected, long after the
            # caller was told the store is unavailable: refuse it instead.
            raise StoreUnavailable(
                f"NATS at {self._where} is not connected (reconnecting); nothing was sent"
            )
        before: Sequence[Message] = ()
        if batch:  # an atomic batch: only its commit answers
            before = [(subject, body, outgoing) for outgoing, body in batch[:-1]]
            headers, payload = batch[-1]
        try:
            return await request(
                nc,
                subject,
                payload,
                headers,
                within=self.timeout if within is None else within,
                before=before,
                each=None if writing else READ_TRY,
            )
        except nats.errors.NoRespondersError as exc:
            raise StoreUnavailable(f"no JetStream stream answers on {subject}") from exc
        except nats.errors.TimeoutError as exc:
            unknown = "; the write may or may not have been stored" if writing else ""
            waited = self.timeout if within is None else round(within, 3)
            raise StoreUnavailable(
                f"NATS did not answer on {subject} within {waited}s{unknown}"
            ) from exc
        except nats.errors.Error as exc:
            raise StoreUnavailable(
                f"NATS request on {subject} failed: {self._scrubbed(exc)}"
            ) from exc

    async def _get(self, ask: dict[str, Any], subject: str = "") -> _Message | None:
        """One message by sequence, or the newest of ``subject``.

        On one server a direct get answers; on a replicated stream any replica may answer a
        direct get, one that has not caught up too, so there the stream leader answers instead
        and a read always sees the writes acknowledged before it.
        """
        if self._replicated:
            return await self._get_from_leader(ask, subject)
        api = f"$JS.API.DIRECT.GET.{self.stream}"
        if subject:
            reply = await self._request(f"{api}.{subject}", b"")
        else:
            reply = await self._request(api, json.dumps(ask).encode())
        message, failure = direct_answer(reply)
        if failure is not None:
            raise StoreUnavailable(f"direct get on {self.stream} failed: {failure}")
        return message

    async def _get_from_leader(self, ask: dict[str, Any], subject: str) -> _Message | None:
        """Through the stream's leader; again while the stream has no leader (an election),
        up to the timeout."""
        to, body = leader_get(self.stream, {"last_by_subj": subject} if subject else ask)
        message, error = await from_leader(
            lambda left: self._request(to, body, within=left), self.timeout
        )
        if error is not None:
            raise StoreUnavailable(f"message get on {self.stream} failed: {error}")
        return message

    async def _last_message(
        self, aggregate_name: str, aggregate_id: str
    ) -> tuple[Tip, _Message] | None:
        message = await self._get({}, subject_of(self.stream, aggregate_name, aggregate_id))
        if message is None:
            return None
        tip = Tip.from_headers(message[1], message[2])
        self._remember((aggregate_name, aggregate_id), tip)
        return tip, message

    def _remember(self, key: _Key, tip: Tip) -> None:
        tips = self._tips
        known = tips.get(key)
        if known is not None and known.sequence > tip.sequence:
            return  # a slower reader must not move the tip back
        if len(tips) >= self._remembered_tips and known is None:
            del tips[next(iter(tips))]
        tips[key] = tip

    async def _last_sequence(self) -> int:
        reply = await self._request(f"$JS.API.STREAM.INFO.{self.stream}", b"")
        info = _decode_info(reply.data)
        if info.state is None:
            raise StoreUnavailable(f"stream {self.stream!r} is unavailable: {info.error}")
        # Never below a write this store saw acknowledged, whoever answered and however late.
        last = max(info.state.last_seq, self._acked)
        self._seen(last)
        return last

    async def _size_limit(self) -> int:
        """The stream's own limit on a message, when the stream refused one as too large."""
        reply = await self._request(f"$JS.API.STREAM.INFO.{self.stream}", b"")
        config = _decode_info(reply.data).config
        return config.max_msg_size if config is not None else -1

    async def _scan(
        self,
        subjects: str,
        start: int = 1,
        stop: int | None = None,
        *,
        batch: Callable[[], int] = lambda: 1000,
        policy: Any = None,
        headers_only: bool = False,
    ) -> AsyncGenerator[_Message, None]:
        """Messages on ``subjects`` from sequence ``start`` through ``stop`` (or the end).

        An ephemeral in-memory pull consumer hands them over ``batch()`` at a time (asked before
        each pull), so a reader that stops early, such as a page of ``read_all``, is not sent
        messages it will not read.

        On a replicated stream the server places the consumer on any replica, one that has not
        applied the newest writes too, and the server the client is connected to may not know
        of it yet (the pull finds no responders). There a scan with a ``stop`` goes on pulling
        until it has delivered ``stop``: what the replica has not got yet is not the end. It
        gives up when nothing arrives for ``timeout`` seconds.

        The consumer numbers the messages it sends; one missing was lost on the way (the
        connection dropped while it was sent), and the scan fails rather than skip it.
        """
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js, nc = self._js, self._client()
        if js is None:
            return
        config = ConsumerConfig(
            deliver_policy=policy or DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if policy else start,
            # A scan of the whole stream goes unfiltered: server 2.9 delivers far slower through
            # a wildcard filter, even one matching everything.
            filter_subject=None if subjects == f"{self.stream}.>" and not policy else subjects,
            ack_policy=AckPolicy.NONE,
            headers_only=headers_only or None,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=max(self.timeout, 1.0),
        )
        arrived: deque[Msg] = deque()
        more = asyncio.Event()

        async def deliver(msg: Msg) -> None:
            arrived.append(msg)
            more.set()

        try:
            consumer = (await js.add_consumer(self.stream, config)).name
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, cb=deliver)
        except Exception as exc:
            raise StoreUnavailable(f"cannot read {subjects}: {self._scrubbed(exc)}") from exc
        api = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}"
        until_stop = stop is not None and self._replicated
        loop = asyncio.get_running_loop()
        progress = loop.time()
        delivered = 0
        try:
            while True:
                size = max(batch(), 1)
                request = json.dumps({"batch": size, "no_wait": True}).encode()
                await nc.publish(api, request, reply=inbox)
                received = 0
                while received < size:
                    if not arrived:
                        more.clear()
                        try:
                            async with asyncio.timeout(self.timeout):
                                await more.wait()
                        except TimeoutError as exc:
                            raise StoreUnavailable(f"reading {subjects} stalled") from exc
                    msg = arrived.popleft()
                    received += 1
                    if not msg.reply:  # a status: nothing (more) to deliver, for now
                        status = (msg.headers or {}).get("Status")
                        if status != _NO_RESPONDERS and not until_stop:
                            return
                        if loop.time() - progress > self.timeout:
                            raise StoreUnavailable(f"reading {subjects} stalled ({status})")
                        await asyncio.sleep(RETRY)
                        break  # pull again
                    meta = msg.metadata
                    delivered += 1
                    if meta.sequence.consumer != delivered:
                        raise StoreUnavailable(
                            f"reading {subjects}: messages were lost on the way (a connection"
                            " dropped); read again"
                        )
                    sequence = meta.sequence.stream
                    yield msg.subject, sequence, msg.headers or {}, msg.data
                    progress = loop.time()
                    if stop is not None and sequence >= stop:
                        return
                    if meta.num_pending == 0 and not until_stop:
                        return
        finally:
            await sub.unsubscribe()
            # Fire and forget: an abandoned consumer also expires on its own.
            await nc.publish(f"$JS.API.CONSUMER.DELETE.{self.stream}.{consumer}", b"")

    async def _watch(self) -> None:
        """Start the consumer that tells followers about every newly stored message."""
        if self._watcher is not None:
            return
        from nats.js.api import DeliverPolicy

        async with self._watching:
            js = self._js
            if self._watcher is not None or js is None:
                self._client()
                return

            async def stored(msg: Msg) -> None:
                self._seen(msg.metadata.sequence.stream)

            try:
                self._watcher = await js.subscribe(
                    f"{self.stream}.>",
                    stream=self.stream,
                    cb=stored,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                    headers_only=True,
                )
            except Exception as exc:
                raise StoreUnavailable(
                    f"cannot follow stream {self.stream!r}: {self._scrubbed(exc)}"
                ) from exc

    def _seen(self, sequence: int) -> None:
        head = head_of(sequence)
        if head > self._head:
            self._head = head
            if self._followers:
                self._wake()

    def _wake(self) -> None:
        for follower in self._followers:
            if not follower.done():
                follower.set_result(None)
        self._followers.clear()


def _positions(last: int, messages: _Outgoing, events: Sequence[StoredEvent]) -> range:
    """The positions of a command's events, stored in ``messages`` ending at sequence ``last``."""
    if len(messages) == 1:
        return positions_of(last, len(events))
    return batch_positions(last, len(messages))


def _too_large(
    aggregate_name: str, aggregate_id: str, events: Sequence[StoredEvent], size: int, limit: int
) -> EventTooLarge:
    largest = max(events, key=lambda e: len(e.data))
    return EventTooLarge(
        aggregate_name, aggregate_id, largest.version, largest.name, size=size, limit=limit
    )


__all__ = ["NatsStore"]
