"""Subscription state on NATS: one JetStream key-value bucket, written in atomic batches.

Everything a subscription keeps (checkpoints with their leases, members, parked and quarantined
events, read-model documents) lives in the bucket ``<stream>_state`` (stream ``KV_<stream>_state``,
history 1), one key per row of the SQL tables::

    cp.<subscription>.<part>        the checkpoint: the one source of truth for the position
    member.<subscription>.<member>  alive until
    parked.<subscription>.<event>   a parked event
    quar.<position>                 a quarantined position
    doc.<model>.<key>               a read-model document and the position it is at

A transaction is an overlay, as in memory: reads see the committed keys with the transaction's
own writes on top, and remember the revision of every key they read. When the block ends cleanly
all writes go to the server as **one atomic batch** (ADR-50, server 2.12 or later; a single write
as one plain message, atomic by itself and far cheaper), each message carrying
``Nats-Expected-Last-Subject-Sequence``: the revision read (0 for a key that was absent).
The server checks every expectation under one lock when the batch commits and stores all of it or
none of it. So a handler's documents and the checkpoint advance become visible together, and if
any key read was changed by another process meanwhile (a lease taken over, a concurrent advance),
nothing is stored and the commit raises :class:`~eventsignal.StateConflict`, which the runner
treats like a lost lease. A key written without being read first (a document the handler did not
read) carries no expectation of its own; the checkpoint in the same batch guards it.

Transactions of one store object take turns (a lock), so a runner's lease renewal never makes its
own batch fail; between processes the expectations decide. Reads
(:meth:`NatsSubscriptions.subscription_reads`) never wait for writers.

A server without atomic batches cannot give this, so the store refuses with
:class:`~eventsignal.ConfigurationError` rather than write the pieces one by one. A batch holds at
most 1000 messages (a server limit), hence a transaction at most 1000 changed keys.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from eventsignal.domain.errors import (
    ConfigurationError,
    StateConflict,
    StoreUnavailable,
)
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.nats.buckets import BucketReads, Entry
from eventsignal.stores.nats.requests import Message, request
from eventsignal.stores.nats.wire import (
    BATCH_COMMIT,
    BATCH_ID,
    BATCH_SEQUENCE,
    CONFLICTS,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    decode_ack,
    decode_token,
    encode_token,
)
from eventsignal.stores.subscription_state import (
    Lease,
    ParkedEvent,
    StoredDocument,
    SubscriptionProgress,
    SubscriptionRow,
    overview_rows,
    parked_event,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.kv import KeyValue

ATOMIC_SINCE = (2, 12)
"""The first server version that stores a batch of messages atomically."""

MAX_BATCH = 1000
"""The most messages the server accepts in one atomic batch."""

_LIST_TRIES = 3  # readings of a listing whose keys keep being removed meanwhile
_READS_IN_FLIGHT = 256  # key reads of one listing at a time
_UNREAD = Entry(0, None)

_STREAM_IN_USE = 10058
_NO_PEERS = 10005  # no suitable peers for placement: too few servers online, for now
_DELETE = {"KV-Operation": "DEL"}


class _Checkpoint(msgspec.Struct, array_like=True, frozen=True):
    parts: int
    position: int
    owner: str | None = None
    lease_until: float = 0.0
    updated_at: float = 0.0


class _Document(msgspec.Struct, array_like=True, frozen=True):
    position: int
    data: bytes


_encode = msgspec.msgpack.Encoder().encode
_checkpoint = msgspec.msgpack.Decoder(_Checkpoint).decode
_document = msgspec.msgpack.Decoder(_Document).decode
_parked = msgspec.msgpack.Decoder(ParkedEvent).decode
_until = msgspec.msgpack.Decoder(float).decode


def token(text: str) -> str:
    """A key token for ``text``: :func:`~eventsignal.stores.nats.wire.encode_token` with ``=`` in
    place of its ``~`` (not allowed in a KV key; never in a plain name either)."""
    encoded = encode_token(text)
    return "=" + encoded[1:] if encoded.startswith("~") else encoded


def untoken(key_token: str) -> str:
    return decode_token("~" + key_token[1:] if key_token.startswith("=") else key_token)


def _cp(name: str, part: int | None = None) -> str:
    return f"cp.{token(name)}." + ("" if part is None else str(part))


def _member(name: str, member: str | None = None) -> str:
    return f"member.{token(name)}." + ("" if member is None else token(member))


def _park_key(name: str | None = None, event_id: UUID | None = None) -> str:
    if name is None:
        return "parked."
    return f"parked.{token(name)}." + ("" if event_id is None else event_id.hex)


def _doc(model: str, key: str | None = None) -> str:
    return f"doc.{token(model)}." + ("" if key is None else token(key))


class NatsSubscriptionState:
    """A :class:`~eventsignal.stores.subscription_state.SubscriptionState` on a KV bucket."""

    idle_limit: float | None = None

    def __init__(
        self,
        kv: KeyValue,
        *,
        writable: bool,
        replicated: bool,
        known: dict[str, tuple[int, bytes | None]] | None = None,
    ) -> None:
        self._kv = kv
        self._reads = BucketReads(kv, replicated=replicated)
        # Checkpoints as this store object last committed them (revision, value): a runner's
        # next advance builds on its own last one without reading it back. Stale when another
        # member wrote since, which the expected revision then catches at commit.
        self._known = known
        self._writable = writable
        self._read: dict[str, tuple[int, bytes | None]] = {}  # revision and value first read
        self._writes: dict[str, bytes | None] = {}  # None: deleted
        self._cleared: list[str] = []  # read models cleared in this transaction

    @property
    def sql(self) -> None:
        return None

    # Keys

    async def _get(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        if key not in self._read:
            known = self._known.get(key) if self._known is not None else None
            self._read[key] = known if known is not None else await self._reads.latest(key)
        return self._read[key][1]

    async def _list(self, prefix: str) -> list[tuple[str, bytes]]:
        """The current keys under ``prefix`` (it ends with a dot), with their values, by key.

        The keys come from the bucket stream's subjects (no consumer, so nothing is missed
        while one starts up), each value as its latest revision holds it.
        """
        found: dict[str, bytes] = {}
        pre = self._kv._pre
        keys = [subject[len(pre) :] for subject in await self._subjects(prefix)]
        unread = [key for key in keys if key not in self._read]
        self._read.update(zip(unread, await self._latest_of(unread), strict=True))
        if self._known is not None:
            self._known.update((key, self._read[key]) for key in unread if key.startswith("cp."))
        for key in keys:
            value = self._read[key][1]
            if value is not None:
                found[key] = value
        for key, value in self._writes.items():
            if key.startswith(prefix):
                if value is None:
                    found.pop(key, None)
                else:
                    found[key] = value
        return sorted(found.items())

    async def _latest_of(self, keys: list[str]) -> list[Entry]:
        """Each key's latest entry, read :data:`_READS_IN_FLIGHT` at a time.

        Together, because a rebalance lists every checkpoint and member and waits for the
        slowest; not all at once, because a read model's documents may number in the hundreds
        of thousands, and asked at once they outwait their own timeout in the server's queue.
        """
        entries: list[Entry] = [_UNREAD] * len(keys)
        turns = iter(range(len(keys)))

        async def reader() -> None:
            for n in turns:
                entries[n] = await self._reads.latest(keys[n])

        try:
            async with asyncio.TaskGroup() as readers:  # one failing stops the others
                for _ in range(min(len(keys), _READS_IN_FLIGHT)):
                    readers.create_task(reader())
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from first.__cause__
        return entries

    async def _subjects(self, prefix: str) -> list[str]:
        """The bucket stream's subjects of the keys under ``prefix``, page by page: the server
        names at most 100,000 in one answer, in order, from the offset asked.

        Keys written meanwhile may push subjects into the next page, where they are named
        again, which is harmless. A subject removed meanwhile (a purge of the stream; deleting a
        key leaves its marker) pulls one out of the next page unseen. So each page is asked from
        the last subject of the one before: a page that does not start there shows a gap, and
        the listing is read again.
        """
        for _ in range(_LIST_TRIES):
            subjects = await self._subject_pages(prefix)
            if subjects is not None:
                return subjects
        raise StoreUnavailable(
            f"cannot list {prefix!r} in {self._kv._name}: keys were removed while they were "
            f"listed, {_LIST_TRIES} times"
        )

    async def _subject_pages(self, prefix: str) -> list[str] | None:
        """One reading of :meth:`_subjects`, or ``None`` if a page showed a gap."""
        subjects: set[str] = set()
        last: str | None = None
        offset = 0
        while True:
            answer = await self._stream_info(prefix, offset)
            page = sorted((answer.get("state") or {}).get("subjects") or ())
            if last is not None and (len(page) < 2 or page[0] > last):
                return None  # a gap, or nothing past ``last`` where the total said there was
            subjects.update(page)
            if not page or offset + len(page) >= answer.get("total", 0):
                return sorted(subjects)  # no total: everything came in one answer
            last = page[-1]
            offset += len(page) - 1  # the next page starts again from ``last``

    async def _stream_info(self, prefix: str, offset: int) -> dict[str, Any]:
        """One page of the stream's subjects of the keys under ``prefix``, from ``offset``."""
        asked = {"subjects_filter": self._kv._pre + prefix + ">", "offset": offset}
        info = f"$JS.API.STREAM.INFO.{self._reads.stream}"
        try:
            reply = await self._reads.ask(info, json.dumps(asked).encode())
            answer: dict[str, Any] = json.loads(reply.data)
        except Exception as exc:
            raise StoreUnavailable(f"cannot list {prefix!r} in {self._kv._name}: {exc}") from exc
        if "error" in answer:
            raise StoreUnavailable(f"cannot list {prefix!r} in {self._kv._name}: {answer['error']}")
        if answer.get("offset", offset) != offset:
            raise StoreUnavailable(
                f"cannot list {prefix!r} in {self._kv._name}: the server answered from offset "
                f"{answer['offset']}, not {offset}"
            )
        return answer

    def _put(self, key: str, value: bytes | None) -> None:
        self._check_writable()
        self._writes[key] = value

    def _check_writable(self) -> None:
        if not self._writable:
            raise ConfigurationError(
                "subscription_reads() is a read-only view: write in a transaction"
            )

    def _remember(self, last: int) -> None:
        """Note the checkpoints just committed: a batch's messages take consecutive sequences
        (revisions), ending at ``last``."""
        known = self._known
        if known is None:
            return
        first = last - len(self._writes) + 1
        for revision, (key, value) in enumerate(self._writes.items(), first):
            if key.startswith("cp."):
                known[key] = (revision, value)

    async def commit(self) -> None:
        """Store every write as one atomic batch, each expecting the revision read."""
        writes = self._writes
        if not writes:
            return
        if len(writes) > MAX_BATCH:
            limit = (
                f"a NATS subscription transaction changes at most {MAX_BATCH} keys (the "
                f"server's atomic batch limit), this one changes {len(writes)}"
            )
            if self._cleared:
                raise ConfigurationError(
                    f"{limit}, clearing read model(s) {', '.join(map(repr, self._cleared))}: a "
                    "read model cleared in one transaction holds at most that many documents "
                    "on NATS; keep a larger one in a SQL store (the runner's checkpoints=)"
                )
            raise ConfigurationError(
                f"{limit}: write fewer documents per batch (a smaller batch_size)"
            )
        nc = self._kv._js._nc
        # One key needs no batch: a single message is atomic, and its expected revision is
        # checked all the same. A batch commit costs the server far more (about 10 ms here,
        # against 0.4), and a runner's checkpoint advance is usually the only write.
        batch = uuid.uuid4().hex if len(writes) > 1 else None
        subject = self._kv._pre
        messages: list[Message] = []
        for n, (key, value) in enumerate(writes.items(), 1):
            headers = {}
            if batch is not None:
                headers = {BATCH_ID: batch, BATCH_SEQUENCE: str(n)}
                if n == len(writes):
                    headers[BATCH_COMMIT] = "1"
            if key in self._read:
                headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(self._read[key][0])
            if value is None:
                headers.update(_DELETE)
            messages.append((subject + key, value or b"", headers or None))
        last, body, headers_of_last = messages.pop()  # only the last one answers
        try:
            reply = await request(
                nc,
                last,
                body,
                headers_of_last,
                within=self._reads.patience,
                before=messages,
            )
        except Exception as exc:
            if self._known is not None:
                self._known.clear()
            raise StoreUnavailable(
                f"committing subscription state to {self._kv._name} failed; it may or may not "
                f"have been stored: {exc}"
            ) from exc
        ack = decode_ack(reply.data)
        if ack.error is None:
            self._remember(ack.seq)
            return
        if self._known is not None:
            self._known.clear()  # something changed behind this store's back: read afresh
        if ack.error.err_code in CONFLICTS:
            raise StateConflict(
                "subscription state changed since this transaction read it (another member "
                f"took over or moved on): nothing was stored ({ack.error.description})"
            )
        raise StoreUnavailable(f"JetStream refused the subscription state batch: {ack.error}")

    # Checkpoints and leases

    async def _rows(self, name: str) -> list[tuple[int, _Checkpoint]]:
        prefix = _cp(name)
        rows = [(int(key[len(prefix) :]), _checkpoint(v)) for key, v in await self._list(prefix)]
        return sorted(rows, key=lambda row: row[0])

    async def _row(self, name: str, part: int) -> _Checkpoint | None:
        value = await self._get(_cp(name, part))
        return None if value is None else _checkpoint(value)

    def _set(self, name: str, part: int, row: _Checkpoint) -> None:
        self._put(_cp(name, part), _encode(row))

    async def ensure(self, name: str, parts: int, position: int) -> None:
        rows = await self._rows(name)
        found = sorted({row.parts for _, row in rows})
        if found and found != [parts]:
            raise ConfigurationError(
                f"subscription {name!r} is stored with {found} partitions, not {parts}; "
                "rebuild it under a new name to change its partitioning"
            )
        for part in range(parts):
            if await self._row(name, part) is None:
                self._set(name, part, _Checkpoint(parts, position))

    async def leases(self, name: str) -> list[Lease]:
        return [Lease(p, r.position, r.owner, r.lease_until) for p, r in await self._rows(name)]

    async def claim(
        self, name: str, part: int, member: str, now: float, until: float
    ) -> int | None:
        row = await self._row(name, part)
        if row is None or not (row.owner is None or row.owner == member or row.lease_until < now):
            return None
        self._set(name, part, msgspec.structs.replace(row, owner=member, lease_until=until))
        return row.position

    async def renew(self, name: str, member: str, until: float) -> None:
        self._check_writable()
        for part, row in await self._rows(name):
            if row.owner == member:
                self._set(name, part, msgspec.structs.replace(row, lease_until=until))
        self._put(_member(name, member), _encode(until))

    async def members(self, name: str, now: float) -> list[str]:
        prefix = _member(name)
        alive = []
        for key, value in await self._list(prefix):
            expires = _until(value)
            if expires < now - 3600:
                if self._writable:  # housekeeping, left to transactions: reads write nothing
                    self._put(key, None)
            elif expires >= now:
                alive.append(untoken(key[len(prefix) :]))
        return sorted(alive)

    async def release(self, name: str, member: str, part: int | None = None) -> None:
        self._check_writable()
        for each, row in await self._rows(name):
            if row.owner == member and (part is None or each == part):
                self._set(name, each, msgspec.structs.replace(row, owner=None, lease_until=0.0))
        if part is None and await self._get(_member(name, member)) is not None:
            self._put(_member(name, member), None)

    async def advance(
        self, name: str, part: int, member: str, expected: int, position: int, now: float
    ) -> bool:
        row = await self._row(name, part)
        if row is None or row.owner != member or row.position != expected:
            return False
        self._set(name, part, msgspec.structs.replace(row, position=position, updated_at=now))
        return True

    async def reset(self, name: str) -> None:
        self._check_writable()
        for part, row in await self._rows(name):
            self._set(
                name, part, msgspec.structs.replace(row, position=0, owner=None, lease_until=0.0)
            )
        for key, _ in await self._list(_park_key(name)):
            self._put(key, None)

    async def progress(self, name: str) -> int | None:
        positions = [row.position for _, row in await self._rows(name)]
        return min(positions) if positions else None

    async def overview(self, now: float) -> list[SubscriptionRow]:
        return overview_rows(
            [(untoken(k.split(".")[1]), _checkpoint(v)) for k, v in await self._list("cp.")],
            [untoken(k.split(".")[1]) for k, _ in await self._list("parked.")],
            now,
        )

    # Parked events

    async def park(
        self, name: str, event: StoredEvent, error: str, attempts: int, now: float
    ) -> None:
        self._check_writable()
        key = _park_key(name, event.id)
        earlier = await self._get(key)
        before = _parked(earlier).attempts if earlier is not None else 0
        parked = parked_event(name, event, error, attempts + before, now)
        self._put(key, _encode(parked))

    async def parked(self, name: str | None = None) -> list[ParkedEvent]:
        found = [_parked(value) for _, value in await self._list(_park_key(name))]
        return sorted(found, key=lambda p: (p.subscription, p.position))

    async def unpark(self, name: str, event_id: UUID) -> None:
        self._check_writable()
        key = _park_key(name, event_id)
        if await self._get(key) is not None:
            self._put(key, None)

    # Quarantined events

    async def quarantine(self, position: int, reason: str, now: float) -> None:
        self._put(f"quar.{position}", reason.encode())

    async def quarantined(self) -> dict[int, str]:
        found = {int(key[5:]): value.decode() for key, value in await self._list("quar.")}
        return dict(sorted(found.items()))

    async def unquarantine(self, position: int) -> bool:
        key = f"quar.{position}"
        if await self._get(key) is None:
            return False
        self._put(key, None)
        return True

    # Read-model documents

    async def document(self, model: str, key: str) -> StoredDocument | None:
        value = await self._get(_doc(model, key))
        if value is None:
            return None
        document = _document(value)
        return StoredDocument(key, document.data, document.position)

    async def documents(self, model: str) -> list[StoredDocument]:
        prefix = _doc(model)
        found = []
        for key, value in await self._list(prefix):
            document = _document(value)
            found.append(
                StoredDocument(untoken(key[len(prefix) :]), document.data, document.position)
            )
        return sorted(found, key=lambda d: d.key)

    async def document_models(self) -> list[str]:
        return sorted({untoken(key.split(".")[1]) for key, _ in await self._list("doc.")})

    async def put_documents(self, model_rows: Iterable[tuple[str, StoredDocument]]) -> None:
        self._check_writable()
        for model, document in model_rows:
            self._put(
                _doc(model, document.key), _encode(_Document(document.position, document.data))
            )

    async def delete_documents(self, keys: Iterable[tuple[str, str]]) -> None:
        self._check_writable()
        for model, key in keys:
            if await self._get(_doc(model, key)) is not None:
                self._put(_doc(model, key), None)

    async def clear_documents(self, model: str) -> None:
        self._check_writable()
        self._cleared.append(model)
        for key, _ in await self._list(_doc(model)):
            self._put(key, None)


class NatsSubscriptions:
    """The :class:`~eventsignal.stores.subscription_state.SubscriptionStore` half of a
    :class:`~eventsignal.stores.NatsStore`: its subscription state in the ``<stream>_state``
    bucket, on a server with atomic batches (2.12 or later)."""

    _state_kv: tuple[Any, KeyValue] | None
    _state_replicated: bool
    _state_turn: asyncio.Lock
    _state_setup: asyncio.Lock
    _progress: SubscriptionProgress
    _checkpoints_known: dict[str, tuple[int, bytes | None]]

    if TYPE_CHECKING:
        stream: str
        replicas: int
        timeout: float

        def _client(self) -> Client: ...

    def _init_subscriptions(self) -> None:
        self._state_kv = None  # (the connection it was bound on, the bucket)
        self._state_replicated = self.replicas > 1  # as the bucket says, once it is open
        self._state_turn = asyncio.Lock()
        self._state_setup = asyncio.Lock()
        self._progress = SubscriptionProgress()
        self._checkpoints_known: dict[str, tuple[int, bytes | None]] = {}

    @property
    def state_bucket(self) -> str:
        """The KV bucket holding the subscription state."""
        return f"{self.stream}_state"

    @property
    def subscription_progress(self) -> SubscriptionProgress:
        return self._progress

    async def setup_subscriptions(self) -> None:
        await self._state_bucket()

    def subscription_transaction(
        self, *, idle_limit: float | None = None
    ) -> AbstractAsyncContextManager[NatsSubscriptionState]:
        return self._state_transaction()

    def subscription_reads(self) -> AbstractAsyncContextManager[NatsSubscriptionState]:
        return self._state_reads()

    @asynccontextmanager
    async def _state_transaction(self) -> AsyncIterator[NatsSubscriptionState]:
        kv = await self._state_bucket()
        async with self._state_turn:
            state = NatsSubscriptionState(
                kv,
                writable=True,
                replicated=self._state_replicated,
                known=self._checkpoints_known,
            )
            yield state
            # A cancellation asked for while the block ran (a runner stopping) lands here, so
            # the transaction rolls back whole rather than leave a sent commit's fate unknown.
            await asyncio.sleep(0)
            await state.commit()

    @asynccontextmanager
    async def _state_reads(self) -> AsyncIterator[NatsSubscriptionState]:
        kv = await self._state_bucket()
        yield NatsSubscriptionState(kv, writable=False, replicated=self._state_replicated)

    async def _state_bucket(self) -> KeyValue:
        """The bucket, created (with atomic batches allowed) on first use on this connection."""
        nc = self._client()
        bound = self._state_kv
        if bound is not None and bound[0] is nc:
            return bound[1]
        async with self._state_setup:
            bound = self._state_kv
            if bound is not None and bound[0] is nc:
                return bound[1]
            self._refuse_without_atomic_batches(nc)
            kv = await self._create_bucket(nc)
            self._state_kv = (nc, kv)
            self._checkpoints_known.clear()
            return kv

    def _refuse_without_atomic_batches(self, nc: Client) -> None:
        version = nc.connected_server_version
        if (version.major, version.minor) < ATOMIC_SINCE:
            raise ConfigurationError(
                f"exactly-once subscription state on NATS needs a server with atomic batch "
                f"publish (2.12 or later); this one is {version}, so read-model writes and the "
                "checkpoint could not be stored together. Upgrade the server, or keep the state "
                "in another store: SubscriptionRunner(..., checkpoints=SQLiteStore(...))"
            )

    async def _create_bucket(self, nc: Client) -> KeyValue:
        bucket = self.state_bucket
        stream = f"KV_{bucket}"
        # Created by hand rather than with create_key_value: the client has no atomic-batch
        # option. The rest is what a KV bucket with history 1 is.
        config = {
            "name": stream,
            "subjects": [f"$KV.{bucket}.>"],
            "max_msgs_per_subject": 1,
            "discard": "new",
            "allow_rollup_hdrs": True,
            "deny_delete": True,
            "allow_direct": True,
            "storage": "file",
            "num_replicas": self.replicas,
            "allow_atomic": True,
        }
        try:
            answer = await self._create_stream(nc, stream, config)
            if answer.error is not None and answer.error.get("err_code") == _STREAM_IN_USE:
                info = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", self.timeout)
                answer = _decode_stream(info.data)
        except Exception as exc:
            raise StoreUnavailable(f"cannot create bucket {bucket!r}: {exc}") from exc
        if answer.config is None:
            raise StoreUnavailable(f"cannot create bucket {bucket!r}: {answer.error}")
        if not answer.config.allow_atomic:
            raise ConfigurationError(
                f"stream {stream} exists without atomic batch publish: enable it (allow_atomic) "
                "so that subscription state commits atomically"
            )
        if answer.config.num_replicas == 1 and not answer.config.allow_direct:
            raise ConfigurationError(
                f"stream {stream} exists without direct gets: enable them (allow_direct), "
                "which is how subscription state is read on one replica"
            )
        self._state_replicated = answer.config.num_replicas > 1
        return await nc.jetstream(timeout=self.timeout).key_value(bucket)

    async def _create_stream(
        self, nc: Client, stream: str, config: dict[str, Any]
    ) -> _StreamAnswer:
        """Ask for the stream, again while a cluster cannot place it yet or outlasts a request
        placing it (up to three timeouts in all), as the event stream is created."""
        import nats.errors

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * self.timeout
        while True:
            try:
                created = await nc.request(
                    f"$JS.API.STREAM.CREATE.{stream}", msgspec.json.encode(config), self.timeout
                )
            except nats.errors.TimeoutError:
                if loop.time() >= deadline:
                    raise
            else:
                answer = _decode_stream(created.data)
                if answer.error is None or answer.error.get("err_code") != _NO_PEERS:
                    return answer
                if loop.time() >= deadline:
                    return answer
            await asyncio.sleep(0.1)


class _BucketConfig(msgspec.Struct):
    allow_atomic: bool = False
    allow_direct: bool = False
    num_replicas: int = 1


class _StreamAnswer(msgspec.Struct):
    config: _BucketConfig | None = None
    error: dict[str, Any] | None = None


_decode_stream = msgspec.json.Decoder(_StreamAnswer).decode
