"""The embedded default store: one SQLite file, through the standard library's :mod:`sqlite3`.

Durability. The database runs in WAL mode with ``synchronous=FULL``: every commit syncs the
write-ahead log before :meth:`SQLiteStore.append` returns, so an acknowledged command survives a
power loss, not just a crash of the process. ``NORMAL`` would skip that sync and could lose the
last transactions on power loss; the cost of ``FULL`` is one sync per commit, which group commit
shares among all the appends that arrive while the previous commit is in flight. The writer
thread forms those groups itself, so an append crosses to it and back once. Commits never copy
the log into the database file (a checkpoint); a thread of the store's does, beside them
(:mod:`eventsignal.stores.sqlite.checkpoints`).

Threads. :mod:`sqlite3` blocks, so nothing runs on the event loop: one writer thread owns the
only write connection (every write, including :meth:`SQLiteStore.transaction`, runs there, one
transaction at a time), and a few reader threads share a small set of read connections. WAL lets
readers run beside the writer, each seeing the last committed state; SQL reads (snapshots,
subscription status, read models) take that path too, through
:meth:`SQLiteStore.read_transaction`, so they never queue behind a write transaction. The write
connection is made and used on the writer thread alone, so it keeps ``check_same_thread``; read
connections pass between reader threads through a queue, used by one thread at a time, which every
threaded build of SQLite allows (``sqlite3.threadsafety`` 1 or 3), so they turn the check off.

Order. SQLite has a single writer per file, and positions (``AUTOINCREMENT``) are assigned inside
the write transaction: a transaction that commits later always holds higher positions than every
one committed before it. So :meth:`SQLiteStore.read_all` never skips an event.

Concurrency control is the database's: an append advances ``eventsignal_aggregates.version`` only
where it still equals the expected version, and ``UNIQUE(stream, version)`` (the stream's number,
its row in ``eventsignal_aggregates``) backs that up. Two stores, or two processes, on one file
therefore cannot both win a version.

Followers in this process are woken after every commit, across all stores on the same file;
commits from other processes are noticed within about 40 ms by a watcher that polls the file only
while someone waits (:mod:`eventsignal.stores.sqlite_followers`).

Storage. Times are integers (microseconds since the Unix epoch, UTC), so they round-trip exactly
and sort; event ids are their 16 bytes; metadata is a JSON object; each stream and event holds its
tenant (``''``: the default one; see :mod:`eventsignal.stores.tenancy`). The tables come from
versioned migrations (:mod:`eventsignal.stores.sqlite.schema`), never from ``open()`` unless
asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

import msgspec

from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    ConcurrencyError,
    ConfigurationError,
    StoreNotMigrated,
    StoreNotOpen,
    StoreUnavailable,
    StreamClosed,
    TransactionEnded,
)
from eventsignal.domain.events import uuid_from_bytes
from eventsignal.stores.base import (
    AggregateInfo,
    FoldRow,
    StoredEvent,
    StoreLifecycle,
    StoreStats,
)
from eventsignal.stores.idempotency import (
    DEFAULT_RETENTION,
    KeyRetention,
    RecordedCommand,
)
from eventsignal.stores.lifecycle import closed_error, is_closed_marker
from eventsignal.stores.rows import (
    UNREADABLE_ID,
    UNREADABLE_TIME,
    decode_metadata,
    read_metadata,
)
from eventsignal.stores.sql import Dialect, SQLTransaction, ensure_component
from eventsignal.stores.sql import idempotency as keys
from eventsignal.stores.sql.batching import AppendOutcome, AppendRequest, settle
from eventsignal.stores.sql.keyed import SQLKeyedAppends
from eventsignal.stores.sql.lifecycle import SQLStreamLifecycle
from eventsignal.stores.sql.lookups import GroupLookup
from eventsignal.stores.sql.rewriting import SQLPayloadRewrite
from eventsignal.stores.sql.subscriptions import SQLSubscriptions
from eventsignal.stores.sql.tenants import DEFAULT_ROWS, OTHER_TENANT, TENANTS, listing
from eventsignal.stores.sqlite.checkpoints import Checkpointer
from eventsignal.stores.sqlite.dcb import DcbWrite, SQLiteDcb
from eventsignal.stores.sqlite.followers import followers_of
from eventsignal.stores.sqlite.schema import (
    EVENTS,
    EVENTS_MIGRATIONS,
    Step,
    apply_migrations,
    migrate_in_transaction,
    schema_version,
)
from eventsignal.stores.tenancy import DEFAULT_TENANT, TenantStore, tenant_store

T = TypeVar("T")

READERS = 3  # read connections (and threads); reads are short, the writer is the bottleneck
READ_TRANSACTIONS = 2 * READERS  # read transactions open at once; more wait for one to end

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_EVENT_COLUMNS = (
    "position, event_id, aggregate_name, aggregate_id, version, name, timestamp, data, metadata"
)
_DEFAULT_TENANT = "''"


def _stream(name: int, tenant: str) -> str:
    """The number of the stream named by parameters ``name`` and ``name + 1``, of ``tenant``
    (``"''"``, or a parameter): a stream's events are found, and kept unique, by it."""
    return (
        f"(SELECT stream FROM eventsignal_aggregates WHERE aggregate_name = ?{name}"
        f" AND aggregate_id = ?{name + 1} AND tenant = {tenant})"
    )


# The default tenant's statements name it as a constant and leave its column to its default,
# so they take the parameters they always took; another tenant's take it as the last parameter
# (see _of_tenant).
_READ_AGGREGATE = (
    f"SELECT {_EVENT_COLUMNS} FROM eventsignal_events "
    f"WHERE stream = {_stream(1, _DEFAULT_TENANT)} AND version > ?3 ORDER BY version"
)
_READ_AGGREGATE_OF = (
    f"SELECT {_EVENT_COLUMNS} FROM eventsignal_events "
    f"WHERE stream = {_stream(1, '?4')} AND version > ?3 ORDER BY version"
)
_READ_ALL = (
    f"SELECT {_EVENT_COLUMNS} FROM eventsignal_events WHERE {DEFAULT_ROWS} AND position > ? "
    "ORDER BY position LIMIT ?"
)
_READ_ALL_OF = (
    f"SELECT {_EVENT_COLUMNS} FROM eventsignal_events WHERE {OTHER_TENANT} AND position > ? "
    "ORDER BY position LIMIT ?"
)
_READ_EVERY = (
    f"SELECT {_EVENT_COLUMNS}, tenant FROM eventsignal_events WHERE position > ? "
    "ORDER BY position LIMIT ?"
)
_READ_AGGREGATE_PAGE = f"{_READ_AGGREGATE} LIMIT ?4"
_READ_AGGREGATE_PAGE_OF = f"{_READ_AGGREGATE_OF} LIMIT ?5"
# What a rebuild folds: each event's version, name and data, nothing else (see FoldReads).
_READ_AGGREGATE_DATA = (
    "SELECT version, name, data FROM eventsignal_events "
    f"WHERE stream = {_stream(1, _DEFAULT_TENANT)} AND version > ?3 ORDER BY version"
)
_READ_AGGREGATE_DATA_OF = (
    "SELECT version, name, data FROM eventsignal_events "
    f"WHERE stream = {_stream(1, '?4')} AND version > ?3 ORDER BY version"
)
_HEAD = "SELECT coalesce(max(position), 0) FROM eventsignal_events"
_DEFAULT_HEAD = (
    f"SELECT position FROM eventsignal_events WHERE {DEFAULT_ROWS} ORDER BY position DESC LIMIT 1"
)
_HEAD_OF = (
    f"SELECT position FROM eventsignal_events WHERE {OTHER_TENANT} ORDER BY position DESC LIMIT 1"
)
_EXISTS = (
    "SELECT 1 FROM eventsignal_aggregates "
    "WHERE aggregate_name = ? AND aggregate_id = ? AND tenant = ''"
)
_VERSION = (
    "SELECT version FROM eventsignal_aggregates "
    "WHERE aggregate_name = ? AND aggregate_id = ? AND tenant = ''"
)
_CREATE = (
    "INSERT INTO eventsignal_aggregates (aggregate_name, aggregate_id, version, created_at) "
    "VALUES (?, ?, ?, ?)"
)
_ADVANCE = (
    "UPDATE eventsignal_aggregates SET version = ? "
    "WHERE aggregate_name = ? AND aggregate_id = ? AND version = ? AND tenant = ''"
)
_INSERT = (
    "INSERT INTO eventsignal_events (position, event_id, aggregate_name, aggregate_id, version, "
    "name, timestamp, data, metadata, stream) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
    f"{_stream(3, _DEFAULT_TENANT)})"
)
_INSERT_OF = (
    "INSERT INTO eventsignal_events (position, event_id, aggregate_name, aggregate_id, version, "
    "name, timestamp, data, metadata, tenant, stream) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
    f"?10, {_stream(3, '?10')})"
)
_LAST_POSITION = "SELECT seq FROM sqlite_sequence WHERE name = 'eventsignal_events'"


def _of_tenant(statement: str) -> str:
    """The statement for a tenant other than the default one: its name is the last parameter."""
    if "tenant = ''" in statement:
        return statement.replace("tenant = ''", "tenant = ?")
    return statement.replace(") VALUES (?", ", tenant) VALUES (?, ?", 1)


class _Writes(NamedTuple):
    """The statements of an append, for the default tenant or for another one."""

    create: str
    advance: str
    version: str
    insert: str


_DEFAULT_WRITES = _Writes(_CREATE, _ADVANCE, _VERSION, _INSERT)
_TENANT_WRITES = _Writes(
    _of_tenant(_CREATE), _of_tenant(_ADVANCE), _of_tenant(_VERSION), _INSERT_OF
)
_EXISTS_OF = _of_tenant(_EXISTS)

# Errors that concern one append request only; anything else fails the whole batch.
_REQUEST_ERRORS = (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    ConcurrencyError,
    StreamClosed,
    TypeError,
    ValueError,
    OverflowError,
    msgspec.EncodeError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
)

_encode_json = msgspec.json.Encoder().encode

# What the writer thread commits in groups: aggregate appends and DCB appends, in one order.
_Request = AppendRequest | DcbWrite


SQLiteStats = StoreStats  # the name it had before every store shared one


class SQLiteStore(
    StoreLifecycle, SQLSubscriptions, SQLStreamLifecycle, SQLPayloadRewrite, SQLKeyedAppends
):
    """An :class:`~eventsignal.stores.EventStore` and :class:`~eventsignal.stores.sql.SQLStore`
    in one SQLite file.

    ``migrate=True`` creates or upgrades the schema on :meth:`open`; otherwise run
    :meth:`migrate` (or ``eventsignal migrate <path>``) once. ``max_batch`` caps how many appends
    share one transaction. ``busy_timeout`` is how long, in seconds, a write waits for another
    process holding the file's write lock before failing with
    :class:`~eventsignal.StoreUnavailable`.
    """

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        migrate: bool = False,
        max_batch: int = 500,
        busy_timeout: float = 5.0,
    ) -> None:
        path = os.fspath(path)
        if path in ("", ":memory:") or path.startswith("file:"):
            raise ConfigurationError(
                f"SQLiteStore needs a file path, not {path!r}: its reader and writer threads use "
                "separate connections, which an in-memory database cannot share "
                "(use MemoryStore for a store in memory)"
            )
        if max_batch < 1:
            raise ConfigurationError("max_batch must be at least 1")
        if sqlite3.threadsafety == 0:
            raise ConfigurationError(
                "this sqlite3 library is built single-threaded; SQLiteStore needs threads"
            )
        self.path = path
        self.max_batch = max_batch
        self.busy_timeout = busy_timeout
        self._migrate_on_open = migrate
        self._users = 0
        self._starting: asyncio.Future[None] | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._writer: _WriterThread | None = None
        self._checkpointer: Checkpointer | None = None
        self._write_connection: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: ThreadPoolExecutor | None = None
        self._read_connections: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        # Connections of read transactions: held across awaits, so kept apart from the above.
        self._idle_snapshots: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._read_transactions = asyncio.Semaphore(READ_TRANSACTIONS)
        self._followers = followers_of(path)
        self._transactions = 0
        self._appends = 0
        self._events = 0
        self._components_migrated: set[str] = set()
        self._lookups: GroupLookup[tuple[str, str, str], RecordedCommand | None] = GroupLookup(
            self._find_commands, max_batch=max_batch
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @property
    def dcb(self) -> SQLiteDcb:
        """Reads and appends by query (dynamic consistency boundaries) over this store's log."""
        return SQLiteDcb(self)

    @property
    def stats(self) -> StoreStats:
        """A snapshot of the counters; compare two to see how appends shared transactions."""
        return StoreStats(self._appends, self._events, self._transactions)

    # Life cycle

    async def open(self) -> None:
        """Connect (the first user) and check, or with ``migrate=True`` apply, the schema."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except BaseException:
            if starting.done() and self._starting is starting and self._users == 0:
                self._starting = None  # a failed start may be tried again
            raise
        self._users += 1

    async def close(self) -> None:
        """Release one user; the last one waits for queued appends, then disconnects."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            self._starting = None  # an open() from now on starts afresh, once this stop is done
            self._stopping = asyncio.ensure_future(self._stop())
            await asyncio.shield(self._stopping)

    async def _start(self) -> None:
        if self._stopping is not None:
            await self._stopping
        writer = _WriterThread(
            self._commit_appends, self._in_transaction, self._between_batches, self.max_batch
        )
        try:
            self._write_connection = await writer.run(self._connect_writer)
            readers = await writer.run(self._connect_readers)
            # The checkpointer connects later: to the file these connections opened.
            where = await writer.run(partial(os.path.abspath, self.path))
        except BaseException as exc:
            writer.post(self._disconnect)
            writer.stop()
            if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
                raise ConfigurationError(
                    f"{self.path} is not a SQLite database (SQLite says: {exc})"
                ) from None
            raise
        for connection in readers:
            self._read_connections.put(connection)
        self._followers.opened()
        self._checkpointer = Checkpointer(where)
        self._writer = writer
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="eventsignal-sqlite-reader")
        self._write_lock = asyncio.Lock()
        self._read_transactions = asyncio.Semaphore(READ_TRANSACTIONS)

    async def _stop(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop, 2.0)  # a checkpoint in flight ends first
        async with self._write_lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                await writer.run(self._disconnect)
                writer.stop()
        readers, self._readers = self._readers, None
        if readers is not None:
            await asyncio.to_thread(readers.shutdown)  # lets reads in flight finish
        for idle in (self._read_connections, self._idle_snapshots):
            while not idle.empty():
                idle.get().close()
        await asyncio.to_thread(self._followers.closed, 2.0)  # a check in flight ends by then

    def _connect(self, *, check_same_thread: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=check_same_thread,
        )
        return connection

    def _connect_writer(self) -> sqlite3.Connection:
        if not self._migrate_on_open and not os.path.exists(self.path):
            raise _unmigrated(self.path, "the file does not exist", 0)
        connection = self._connect(check_same_thread=True)  # used by the writer thread alone
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise ConfigurationError(
                    f"{self.path}: SQLite refused WAL mode (journal mode {mode!r})"
                )
            connection.execute("PRAGMA synchronous = FULL")
            # Commits never checkpoint: the store's checkpointer does (see .checkpoints).
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            if self._migrate_on_open:
                if apply_migrations(connection, EVENTS, EVENTS_MIGRATIONS) < len(EVENTS_MIGRATIONS):
                    self._transactions += 1
            else:
                version = schema_version(connection, EVENTS)
                if version < len(EVENTS_MIGRATIONS):
                    raise _unmigrated(self.path, f"its schema is at version {version}", version)
        except BaseException:
            connection.close()
            raise
        return connection

    def _connect_readers(self) -> list[sqlite3.Connection]:
        # Each is used by one reader thread at a time (taken from and returned to a queue).
        return [self._connect(check_same_thread=False) for _ in range(READERS)]

    def _connect_snapshot(self) -> sqlite3.Connection:
        connection = self._connect(check_same_thread=False)  # one thread at a time, as above
        connection.execute("PRAGMA query_only = ON")  # a read transaction cannot write by mistake
        return connection

    def _disconnect(self) -> None:
        connection, self._write_connection = self._write_connection, None
        if connection is not None:
            connection.close()

    def _check_open(self) -> None:
        if self._writer is None:
            raise self._not_open()

    def _not_open(self) -> StoreNotOpen:
        return StoreNotOpen(f"{self!r} is not open: call 'await store.open()' first")

    # Running blocking work in threads

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        readers = self._readers
        if readers is None:
            raise self._not_open()
        return await asyncio.get_running_loop().run_in_executor(readers, self._on_reader, query)

    def _on_reader(self, query: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._read_connections.get()
        try:
            return query(connection)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        finally:
            self._read_connections.put(connection)

    async def _read_in(
        self, connection: sqlite3.Connection, query: Callable[[sqlite3.Connection], T]
    ) -> T:
        readers = self._readers
        if readers is None:
            raise self._not_open()
        return await asyncio.get_running_loop().run_in_executor(
            readers, _in_snapshot, self.path, connection, query
        )

    def _end_snapshot(self, connection: sqlite3.Connection) -> None:
        """Release the snapshot and make the connection available again (on a reader thread)."""
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            connection.close()
        else:
            self._idle_snapshots.put(connection)

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on the writer thread; callers hold ``_write_lock``."""
        writer = self._writer
        if writer is None:
            raise self._not_open()
        return await writer.run(partial(self._on_writer, job))

    def _on_writer(self, job: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._write_connection
        assert connection is not None
        return job(connection)

    def _unavailable(self, exc: sqlite3.OperationalError) -> StoreUnavailable:
        if "locked" in str(exc) or "busy" in str(exc):
            return StoreUnavailable(
                f"{self.path}: another connection held the write lock for more than "
                f"{self.busy_timeout} s ({exc}); nothing was stored"
            )
        return StoreUnavailable(f"{self.path}: {exc}; nothing was stored")

    # Writes

    async def create(
        self,
        aggregate_name: str,
        aggregate_id: str,
        events: Sequence[StoredEvent] = (),
        *,
        created_at: datetime | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[int]:
        request = AppendRequest.creation(aggregate_name, aggregate_id, events, created_at, tenant)
        writer = self._writer
        if writer is None:
            raise self._not_open()
        # Through group commit, so that many creations share one durable commit.
        return await writer.append(request)

    async def append(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[StoredEvent],
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[int]:
        request = AppendRequest.checked(
            aggregate_name, aggregate_id, expected_version, events, tenant
        )
        writer = self._writer
        if writer is None:
            raise self._not_open()
        return await writer.append(request)

    # Idempotent commands (see eventsignal.stores.idempotency): the key joins the append's
    # request, so it commits in the same transaction, group commit included.

    async def _append_keyed(self, request: AppendRequest) -> Sequence[int]:
        self._check_open()
        await ensure_component(self, keys.COMPONENT, keys.MIGRATIONS["sqlite"])
        writer = self._writer
        if writer is None:
            raise self._not_open()
        return await writer.append(request)

    async def find_command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        key: str,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> RecordedCommand | None:
        # Retention is applied when keys are recorded: what is found here is kept.
        self._check_open()
        await ensure_component(self, keys.COMPONENT, keys.MIGRATIONS["sqlite"])
        # Through group lookup: concurrent keyed commands share one trip to a reader thread.
        return await self._lookups.ask((aggregate_name, aggregate_id, key))

    async def _find_commands(
        self, wanted: list[tuple[str, str, str]]
    ) -> list[RecordedCommand | None]:
        return await self._read(partial(_find_keys, wanted))

    # Appends in the caller's transaction (SharedTransactions)

    async def _append_in(self, tx: SQLTransaction, request: AppendRequest) -> Sequence[int]:
        if not isinstance(tx, _Transaction) or isinstance(tx, _ReadTransaction):
            raise ConfigurationError(f"append_in needs a transaction of {self!r}.transaction()")
        migrate = request.key is not None and keys.COMPONENT not in self._migrated()
        positions = await tx._run(partial(_append_in_transaction, request, migrate))
        if migrate:
            self._migrated().add(keys.COMPONENT)
        self._appends += 1
        self._events += len(positions)
        return positions

    def _migrated(self) -> set[str]:
        """The components this store object knows to be migrated (see ``ensure_component``)."""
        return self._components_migrated

    def _commit_appends(self, requests: list[_Request]) -> list[AppendOutcome]:
        """Commit a batch of appends; runs on the writer thread, which forms the batches."""
        connection = self._write_connection
        if connection is None:  # closed with appends still queued
            raise self._not_open()
        outcomes = self._append_batch(requests, connection)
        self._followers.wake()
        checkpointer = self._checkpointer
        if checkpointer is not None:
            checkpointer.committed()
        return outcomes

    def _between_batches(self) -> None:
        """On the writer thread, its last batch acknowledged: bound the write-ahead log."""
        checkpointer = self._checkpointer
        connection = self._write_connection
        if checkpointer is None or not checkpointer.overdue or connection is None:
            return
        if connection.in_transaction:  # a transaction() is open: after it
            return
        with contextlib.suppress(sqlite3.Error):  # busy: tried again after the next batch
            checkpointer.checkpoint_in(connection)

    def _in_transaction(self) -> bool:
        """Whether a :meth:`transaction` holds the write connection; appends wait for its end."""
        connection = self._write_connection
        return connection is not None and connection.in_transaction

    def _append_batch(
        self, requests: list[_Request], connection: sqlite3.Connection
    ) -> list[AppendOutcome]:
        """One transaction for the whole batch, written a statement per table when every
        request succeeds (see :func:`_append_together`); else request by request, with a
        savepoint per request to isolate its failure. (Alone, a request takes the second way,
        one statement fewer.)

        A batch of one request needs no savepoint: the transaction is then the request's unit of
        failure, rolled back instead of committed.
        """
        execute = connection.execute
        alone = len(requests) == 1
        outcomes: list[AppendOutcome] = []
        appends = events = 0
        try:
            together = None if alone else _append_together(connection, requests)
            if together is not None:
                self._transactions += 1
                self._appends += len(together)
                self._events += sum(map(len, together))
                return list(together)
            execute("BEGIN IMMEDIATE")
            try:
                for request in requests:
                    if not alone:
                        execute("SAVEPOINT append")
                    try:
                        if isinstance(request, DcbWrite):  # its condition, events and tags
                            positions = request.write(connection)
                        else:
                            positions = _append_one(connection, request)
                    except _REQUEST_ERRORS as exc:
                        execute("ROLLBACK" if alone else "ROLLBACK TO append")
                        outcomes.append(exc)
                        continue
                    finally:
                        if not alone:
                            execute("RELEASE append")
                    appends += 1
                    events += len(positions)
                    outcomes.append(positions)
                if not connection.in_transaction:
                    return outcomes  # its one request failed, and was rolled back
                execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        self._transactions += 1
        self._appends += appends
        self._events += events
        return outcomes

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLTransaction]:
        """A write transaction on the writer connection, serialized with appends.

        It holds the file's write lock until the block ends: keep it short.
        """
        self._check_open()
        async with self._write_lock:
            writer = self._writer
            assert writer is not None
            try:
                await self._write(_begin)
            except BaseException as exc:
                writer.post(partial(self._on_writer, _rollback_if_open))
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._unavailable(exc) from exc
                raise
            transaction = _Transaction(self)
            try:
                yield transaction
                transaction.closed = True
                await self._write(_commit)
            except BaseException:
                # Queued on the writer thread, so it runs before the next write whatever happens
                # to this task: the connection never stays inside a stale transaction.
                writer.post(partial(self._on_writer, _rollback_if_open))
                raise
            finally:
                transaction.closed = True
            self._transactions += 1
        self._followers.wake()
        checkpointer = self._checkpointer
        if checkpointer is not None:
            checkpointer.committed()

    @asynccontextmanager
    async def read_transaction(self) -> AsyncIterator[SQLTransaction]:
        """A read-only transaction on a read connection: it never waits for the writer.

        Its statements see one snapshot, the state committed when its first statement ran, and
        run beside appends and :meth:`transaction`, which they would otherwise queue behind.
        Statements that write fail with :class:`~eventsignal.SignalError`.
        """
        self._check_open()
        async with self._read_transactions:
            try:
                connection = self._idle_snapshots.get_nowait()
            except queue.Empty:
                connection = await self._read_in_new_connection()
            transaction = _ReadTransaction(self, connection)
            try:
                yield transaction
            finally:
                transaction.closed = True
                readers = self._readers
                if readers is None:  # the store closed meanwhile
                    connection.close()
                else:
                    # Not awaited: ending a read transaction cannot fail the reads it made.
                    readers.submit(self._end_snapshot, connection)

    async def _read_in_new_connection(self) -> sqlite3.Connection:
        readers = self._readers
        if readers is None:
            raise self._not_open()
        return await asyncio.get_running_loop().run_in_executor(readers, self._connect_snapshot)

    async def migrate(self) -> None:
        """Create or upgrade the store's own tables (component ``"events"``)."""
        await self.migrate_component(EVENTS, EVENTS_MIGRATIONS)

    async def migrate_component(self, component: str, migrations: Sequence[Sequence[Step]]) -> None:
        """Apply the ``migrations`` of one schema component not applied yet, in order."""
        if self._writer is None:
            await asyncio.to_thread(self._migrate_detached, component, migrations)
            return
        async with self._write_lock:
            if await self._write(
                partial(apply_migrations, component=component, migrations=migrations)
            ) < len(migrations):
                self._transactions += 1

    def _migrate_detached(self, component: str, migrations: Sequence[Sequence[Step]]) -> None:
        connection = self._connect(check_same_thread=True)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            apply_migrations(connection, component, migrations)
        finally:
            connection.close()

    # Tenants

    def for_tenant(self, tenant: str | None) -> TenantStore:
        """This store as one tenant sees it (``None``: every tenant, read-only)."""
        return tenant_store(self, tenant)

    async def tenants(self) -> Sequence[str]:
        """The tenants holding at least one stream, sorted (``""`` is the default one)."""
        return [row[0] for row in await self._read(partial(_fetchall, TENANTS, ()))]

    # Reads

    async def exists(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> bool:
        if tenant:
            query = partial(_fetchall, _EXISTS_OF, (aggregate_name, aggregate_id, tenant))
        else:
            query = partial(_fetchall, _EXISTS, (aggregate_name, aggregate_id))
        return bool(await self._read(query))

    async def read_aggregate(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        if tenant:
            params_of = (aggregate_name, aggregate_id, after_version, tenant)
            return await self._read(
                partial(_read_events, _READ_AGGREGATE_OF, params_of, tenant=tenant)
            )
        params = (aggregate_name, aggregate_id, after_version)
        return await self._read(partial(_read_events, _READ_AGGREGATE, params))

    async def read_aggregate_data(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> AsyncGenerator[Sequence[FoldRow], None]:
        """``(version, name, data)`` of the aggregate's events after ``after_version``, in one
        chunk."""
        params: tuple[Any, ...] = (aggregate_name, aggregate_id, after_version)
        statement = _READ_AGGREGATE_DATA
        if tenant:
            statement, params = _READ_AGGREGATE_DATA_OF, (*params, tenant)
        rows: Sequence[FoldRow] = await self._read(partial(_fetchall, statement, params))
        if rows:
            yield rows

    async def read_aggregate_page(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int,
        limit: int,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        if tenant:
            params_of = (aggregate_name, aggregate_id, after_version, tenant, limit)
            return await self._read(
                partial(_read_events, _READ_AGGREGATE_PAGE_OF, params_of, tenant=tenant)
            )
        params = (aggregate_name, aggregate_id, after_version, limit)
        return await self._read(partial(_read_events, _READ_AGGREGATE_PAGE, params))

    async def read_all(
        self, after_position: int = 0, limit: int = 1000, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[StoredEvent]:
        if tenant == DEFAULT_TENANT:
            return await self._read(partial(_read_events, _READ_ALL, (after_position, limit)))
        if tenant is None:
            query = partial(_read_events, _READ_EVERY, (after_position, limit), tenant=None)
        else:
            query = partial(
                _read_events, _READ_ALL_OF, (tenant, after_position, limit), tenant=tenant
            )
        return await self._read(query)

    async def head_position(self, *, tenant: str | None = DEFAULT_TENANT) -> int:
        """The position of the last event of ``tenant`` (``None``: of the whole log)."""
        if tenant is None:
            rows = await self._read(partial(_fetchall, _HEAD, ()))
        elif tenant:
            rows = await self._read(partial(_fetchall, _HEAD_OF, (tenant,)))
        else:
            rows = await self._read(partial(_fetchall, _DEFAULT_HEAD, ()))
        return int(rows[0][0]) if rows else 0

    async def aggregates(
        self, aggregate_name: str | None = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[AggregateInfo]:
        statement, params = listing(aggregate_name, tenant)
        return [
            AggregateInfo(
                aggregate_name=name,
                aggregate_id=aggregate_id,
                version=version,
                created_at=_EPOCH + timedelta(microseconds=created_at),
                tenant=owner,
            )
            for name, aggregate_id, version, created_at, owner in await self._read(
                partial(_fetchall, statement, params)
            )
        ]

    async def wait_for_events(self, after_position: int) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Added before reading the head, so that no commit slips between.
        self._followers.add(waiter, after_position)
        try:
            if await self.head_position(tenant=None) > after_position:
                return
            await waiter
        finally:
            self._followers.discard(waiter)


class _Transaction:
    """The :class:`SQLTransaction` handed out by :meth:`SQLiteStore.transaction`."""

    __slots__ = ("_store", "closed")

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self.closed = False

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self.closed:
            raise TransactionEnded("this transaction has ended")
        return await self._store._write(job)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._run(partial(_execute, sql, params))

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        await self._run(partial(_executemany, sql, params))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(partial(_fetchall, sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class _ReadTransaction(_Transaction):
    """The :class:`SQLTransaction` handed out by :meth:`SQLiteStore.read_transaction`."""

    __slots__ = ("_connection",)

    def __init__(self, store: SQLiteStore, connection: sqlite3.Connection) -> None:
        super().__init__(store)
        self._connection = connection

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self.closed:
            raise TransactionEnded("this transaction has ended")
        return await self._store._read_in(self._connection, job)


# A queued job: what to run, and the future for its outcome (none for a posted job).
_Job = tuple[Callable[[], Any], asyncio.Future[Any] | None]
# Appends sent together from an event loop: each request with the future its caller awaits.
_Appends = list[tuple[_Request, asyncio.Future[Sequence[int]]]]


class _WriterThread:
    """The thread that owns the write connection: it runs blocking jobs one at a time, in order,
    and commits appends in groups.

    Cheaper than ``run_in_executor`` on a one-thread pool, which matters because every command
    crosses it: work travels on a :class:`queue.SimpleQueue` and results come back through
    ``call_soon_threadsafe``, with no :class:`concurrent.futures.Future` and its locks between.

    Group commit happens here rather than in a task on the event loop: the appends of one loop
    iteration travel as one item, and every append queued while a commit is in flight joins the
    next one, so a commit costs one hop each way however many commands share it, and the
    callers' futures are settled by one callback per batch. Appends wait while a
    :meth:`SQLiteStore.transaction` holds the connection, and jobs keep their order: appends
    queued before a job commit before it runs.

    A job always runs once queued, even if its caller is cancelled meanwhile; jobs queued after it
    (such as a rollback) therefore find the connection in the state it left.

    The thread is a daemon so that a store never closed cannot hang the interpreter's exit; an
    interrupted write transaction is rolled back by SQLite, and no caller was told it committed.
    """

    __slots__ = ("_between", "_busy", "_commit", "_jobs", "_max_batch", "_outbox")

    def __init__(
        self,
        commit: Callable[[list[_Request]], list[AppendOutcome]],
        busy: Callable[[], bool],
        between: Callable[[], None],
        max_batch: int,
    ) -> None:
        self._commit = commit
        self._busy = busy
        self._between = between
        self._max_batch = max_batch
        self._outbox: _Appends = []
        self._jobs: queue.SimpleQueue[_Job | _Appends | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="eventsignal-sqlite-writer", daemon=True).start()

    def append(self, request: _Request) -> asyncio.Future[Sequence[int]]:
        """Queue ``request`` for the next group commit; the future settles with its positions."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sequence[int]] = loop.create_future()
        outbox = self._outbox
        outbox.append((request, future))
        if len(outbox) == 1:
            # Sent once this loop iteration ends, with every append it makes: one queue hop.
            loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            self._jobs.put(outbox)

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``job``; the future settles, in the caller's event loop, with its outcome."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._send()  # appends made before this job go first
        self._jobs.put((job, future))
        return future

    def post(self, job: Callable[[], object]) -> None:
        """Queue ``job`` with nobody waiting for it (its failure is dropped)."""
        self._send()
        self._jobs.put((job, None))

    def stop(self) -> None:
        """End the thread once the work already queued is done."""
        self._send()
        self._jobs.put(None)

    def _serve(self) -> None:
        jobs = self._jobs
        waiting: _Appends = []  # appends not committed yet, in arrival order
        while True:
            item: _Job | _Appends | None = jobs.get()
            drained = False
            # Appends queued while the last commit was in flight all join the next one.
            while type(item) is list:
                waiting += item
                try:
                    item = jobs.get_nowait()
                except queue.Empty:
                    drained = True
                    break
            if waiting:
                self._flush(waiting)
            if drained:
                continue
            if item is None:
                break
            _run_job(*item)
            del item  # nothing of the last job kept alive while idle
            if waiting:  # held back by a transaction that this job may have ended
                self._flush(waiting)
        for _, future in waiting:  # held back by a transaction that never ended
            _settle_threadsafe(future.get_loop(), _fail, future, StoreNotOpen("the store closed"))

    def _flush(self, waiting: _Appends) -> None:
        """Commit ``waiting`` in batches of at most ``max_batch``, unless a transaction is open;
        settle the callers' futures, one callback per event loop and batch."""
        while waiting and not self._busy():
            batch = waiting[: self._max_batch]
            del waiting[: self._max_batch]
            outcomes: list[AppendOutcome]
            try:
                outcomes = self._commit([request for request, _ in batch])
            except BaseException as exc:  # the whole batch failed: none of it was acknowledged
                outcomes = [exc] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(future.get_loop(), []).append((future, outcome))
            for loop, settled in by_loop.items():
                _settle_threadsafe(loop, _settle_appends, settled, None)
            self._between()


def _settle_appends(
    settled: list[tuple[asyncio.Future[Sequence[int]], AppendOutcome]], _: object
) -> None:
    for future, outcome in settled:
        settle(future, outcome)


def _run_job(job: Callable[[], Any], future: asyncio.Future[Any] | None) -> None:
    try:
        result = job()
    except BaseException as exc:  # delivered to the caller, as an executor would
        if future is not None:
            _settle_threadsafe(future.get_loop(), _fail, future, exc)
    else:
        if future is not None:
            _settle_threadsafe(future.get_loop(), _succeed, future, result)


def _settle_threadsafe(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[Any, Any], None],
    target: object,
    outcome: object,
) -> None:
    # RuntimeError: the loop closed meanwhile, and nobody is waiting there any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle, target, outcome)


def _succeed(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():  # cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


# Blocking helpers, run in the store's threads


def _in_snapshot(
    path: str, connection: sqlite3.Connection, query: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``query`` inside the read transaction of ``connection``, starting it if needed."""
    try:
        if not connection.in_transaction:
            connection.execute("BEGIN")  # deferred: a read snapshot, no lock on the writer
        return query(connection)
    except sqlite3.OperationalError as exc:
        if "readonly" in str(exc):
            raise ConfigurationError(
                f"{path}: a read transaction cannot write ({exc}); use store.transaction()"
            ) from exc
        raise StoreUnavailable(f"{path}: {exc}") from exc


def _begin(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")


def _commit(connection: sqlite3.Connection) -> None:
    connection.execute("COMMIT")


def _rollback_if_open(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _execute(sql: str, params: Sequence[Any], connection: sqlite3.Connection) -> int:
    return connection.execute(sql, params).rowcount


def _executemany(sql: str, params: Sequence[Sequence[Any]], connection: sqlite3.Connection) -> None:
    connection.executemany(sql, params)


def _fetchall(
    sql: str, params: Sequence[Any], connection: sqlite3.Connection
) -> list[tuple[Any, ...]]:
    # fetchall() finishes the statement, which ends the implicit read transaction at once.
    return connection.execute(sql, params).fetchall()


def _read_events(
    sql: str,
    params: Sequence[Any],
    connection: sqlite3.Connection,
    tenant: str | None = DEFAULT_TENANT,
) -> list[StoredEvent]:
    """The events ``sql`` selects, all of ``tenant``; with ``None``, each row ends with its own."""
    rows = connection.execute(sql, params).fetchall()
    if tenant is None:
        return [_checked_event(row[:-1], row[-1]) for row in rows]
    try:
        return [
            StoredEvent(
                id=uuid_from_bytes(event_id) if type(event_id) is bytes else UUID(event_id),
                aggregate_name=aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                name=name,
                timestamp=_EPOCH + timedelta(microseconds=timestamp),
                data=data,
                metadata=decode_metadata(metadata),
                position=position,
                tenant=tenant,
            )
            for (
                position,
                event_id,
                aggregate_name,
                aggregate_id,
                version,
                name,
                timestamp,
                data,
                metadata,
            ) in rows
        ]
    except (ValueError, TypeError, OverflowError):
        # Some row was written by hand or by older code: hand every row back, the bad ones
        # flagged, rather than fail the whole read.
        return [_checked_event(row, tenant) for row in rows]


def _checked_event(row: tuple[Any, ...], tenant: str) -> StoredEvent:
    """A row as an event of ``tenant``; one that cannot be read is flagged, not refused."""
    position, event_id, aggregate_name, aggregate_id, version, name, timestamp, data, meta = row
    metadata, defect = read_metadata(meta)
    try:
        uuid = uuid_from_bytes(event_id) if type(event_id) is bytes else UUID(event_id)
        when = _EPOCH + timedelta(microseconds=timestamp)
    except (ValueError, TypeError, OverflowError) as exc:
        uuid, when = UNREADABLE_ID, UNREADABLE_TIME
        defect = f"stored event id or timestamp cannot be read: {exc}"
    return StoredEvent(
        id=uuid,
        aggregate_name=aggregate_name,
        aggregate_id=aggregate_id,
        version=version,
        name=name,
        timestamp=when,
        data=data,
        metadata=metadata,
        position=position,
        defect=defect,
        tenant=tenant,
    )


def _append_one(connection: sqlite3.Connection, request: AppendRequest) -> range:
    """Store one request's events inside the open transaction; return their positions.

    SQLite assigns the first position (``AUTOINCREMENT``: above every position ever used, by any
    connection, since the write lock is held), the others follow it, so no read is needed first.
    """
    name = request.aggregate_name
    aggregate_id = request.aggregate_id
    expected = request.expected_version
    events = request.events
    execute = connection.execute
    tenant = request.tenant
    # Another tenant's statements take its name last.
    sql, owner = (_TENANT_WRITES, (tenant,)) if tenant else (_DEFAULT_WRITES, ())
    if request.create:
        created = request.created_at or datetime.now(UTC)
        try:
            execute(sql.create, (name, aggregate_id, len(events), _micros(created), *owner))
        except sqlite3.IntegrityError:
            raise AggregateExists(name, aggregate_id) from None
        if not events:
            if request.key is not None:
                _record_key(connection, request)
            return range(0)
    elif (
        execute(sql.advance, (expected + len(events), name, aggregate_id, expected, *owner))
    ).rowcount != 1:
        rows = execute(sql.version, (name, aggregate_id, *owner)).fetchall()
        if not rows:
            raise AggregateNotFound(name, aggregate_id)
        if is_closed_marker(rows[0][0]):
            raise closed_error(name, aggregate_id, rows[0][0])
        raise ConcurrencyError(name, aggregate_id, expected, rows[0][0])
    first, *rest = events
    try:
        row = _event_row(None, name, aggregate_id, first)
        position = execute(sql.insert, (*row, *owner) if tenant else row).lastrowid
        assert position is not None
        if rest:
            connection.executemany(
                sql.insert,
                [
                    _event_row(following, name, aggregate_id, event)
                    for following, event in enumerate(rest, start=position + 1)
                ]
                if not tenant
                else [
                    (*_event_row(following, name, aggregate_id, event), tenant)
                    for following, event in enumerate(rest, start=position + 1)
                ],
            )
    except sqlite3.IntegrityError as exc:
        raise _integrity_error(request, exc) from exc
    if request.key is not None:
        _record_key(connection, request)
    return range(position, position + len(events))


def _append_together(
    connection: sqlite3.Connection, requests: list[_Request]
) -> list[range] | None:
    """Commit a batch of plain appends to distinct aggregates with one statement per table, or
    roll back and return ``None`` if any of them would fail (the caller then goes request by
    request, which tells each its own outcome).

    Request by request, the writer ran four statements per request (a savepoint, the version
    check, the event, the release), each a round through :mod:`sqlite3` holding the GIL that
    the event loop needs too: most of the writer's time at 64 clients. Here each table gets one
    ``executemany``: every version check succeeded if the rows advanced are as many as the
    appends, a creation whose id is taken fails its insert, and positions follow the highest
    one ever used (``sqlite_sequence``, read under the write lock).
    """
    if not all(
        type(request) is AppendRequest and request.key is None and not request.tenant
        for request in requests
    ):
        return None  # the default tenant's plain appends only
    plain: list[AppendRequest] = requests  # type: ignore[assignment]  # checked just above
    if len({(r.aggregate_name, r.aggregate_id) for r in plain}) != len(plain):
        return None  # the second request for an aggregate must see the first
    advances = [
        (r.expected_version + len(r.events), r.aggregate_name, r.aggregate_id, r.expected_version)
        for r in plain
        if not r.create
    ]
    execute = connection.execute
    execute("BEGIN IMMEDIATE")
    try:
        try:
            if advances and connection.executemany(_ADVANCE, advances).rowcount != len(advances):
                raise _Refused
            now = datetime.now(UTC)
            creations = [
                (r.aggregate_name, r.aggregate_id, len(r.events), _micros(r.created_at or now))
                for r in plain
                if r.create
            ]
            if creations:
                connection.executemany(_CREATE, creations)
            last = execute(_LAST_POSITION).fetchone()
            position = last[0] if last else 0
            rows: list[tuple[Any, ...]] = []
            outcomes: list[range] = []
            for request in plain:
                first = position + 1
                name, aggregate_id = request.aggregate_name, request.aggregate_id
                for event in request.events:
                    position += 1
                    rows.append(_event_row(position, name, aggregate_id, event))
                outcomes.append(range(first, position + 1))
            if rows:
                connection.executemany(_INSERT, rows)
        except (_Refused, sqlite3.IntegrityError, *_REQUEST_ERRORS):
            execute("ROLLBACK")
            return None
        execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            execute("ROLLBACK")
        raise
    return outcomes


class _Refused(Exception):
    """Some request of a batch written together would fail."""


def _find_keys(
    wanted: list[tuple[str, str, str]], connection: sqlite3.Connection
) -> list[RecordedCommand | None]:
    """The commands recorded under each (name, id, key), read in one snapshot."""
    found: list[RecordedCommand | None] = []
    connection.execute("BEGIN")
    try:
        for question in wanted:
            row = connection.execute(keys.FIND, question).fetchone()
            found.append(
                None
                if row is None
                else keys.recorded(question[2], row, _EPOCH + timedelta(microseconds=row[2]))
            )
    finally:
        connection.execute("ROLLBACK")
    return found


def _record_key(connection: sqlite3.Connection, request: AppendRequest) -> None:
    """Record the request's idempotency key, then drop the aggregate's keys past retention."""
    key, retention = request.key, request.retention
    assert key is not None
    assert retention is not None
    name, aggregate_id = request.aggregate_name, request.aggregate_id
    version = request.expected_version + len(request.events)
    moment = _micros(key.recorded_at)
    try:
        connection.execute(
            keys.INSERT, keys.insert_params(name, aggregate_id, key, version, moment)
        )
    except sqlite3.IntegrityError:
        raise CommandKeyTaken(name, aggregate_id, key.key) from None
    cutoff = retention.cutoff(key.recorded_at)
    connection.execute(
        keys.PRUNE,
        keys.prune_params(
            name, aggregate_id, retention, None if cutoff is None else _micros(cutoff)
        ),
    )


def _append_in_transaction(
    request: AppendRequest, migrate: bool, connection: sqlite3.Connection
) -> range:
    """One request stored inside the caller's open transaction (the key table made first, if
    this store has not seen it yet)."""
    if migrate:
        migrate_in_transaction(connection, keys.COMPONENT, keys.MIGRATIONS["sqlite"])
    return _append_one(connection, request)


def _event_row(
    position: int | None, name: str, aggregate_id: str, event: StoredEvent
) -> tuple[Any, ...]:
    return (
        position,
        event.id.bytes,
        name,
        aggregate_id,
        event.version,
        event.name,
        (event.timestamp - _EPOCH) // _MICROSECOND,
        event.data,
        _encode_metadata(event.metadata),
    )


def _micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch; exact, and a naive datetime raises TypeError."""
    return (moment - _EPOCH) // _MICROSECOND


def _encode_metadata(metadata: Mapping[str, str]) -> str:
    return _encode_json(metadata).decode() if metadata else "{}"


def _integrity_error(request: AppendRequest, exc: sqlite3.IntegrityError) -> Exception:
    if "event_id" in str(exc):
        return ValueError(
            f"{request.aggregate_name} {request.aggregate_id!r}: an event id of this append "
            "is already stored"
        )
    # The version check passed yet a version was taken: a writer that bypassed the aggregates table.
    return ConcurrencyError(request.aggregate_name, request.aggregate_id, request.expected_version)


def _unmigrated(path: str, reason: str, found: int) -> StoreNotMigrated:
    return StoreNotMigrated(
        f"{path} holds no eventsignal schema ({reason}): run 'await store.migrate()' or "
        f"'eventsignal migrate {path}' once, or open it with SQLiteStore(path, migrate=True)",
        component=EVENTS,
        found=found,
        expected=len(EVENTS_MIGRATIONS),
    )


__all__ = ["SQLiteStats", "SQLiteStore"]
