"""The production event store: PostgreSQL through psycopg 3 (``pip install eventsignal[postgres]``).

Durability and concurrency live in the database, never in this process, so any number of
processes may share one database:

* Optimistic concurrency: an append advances ``eventsignal_aggregates.version`` only from the
  expected version, and ``UNIQUE(tenant, aggregate_name, aggregate_id, version)`` on the events
  backs it.
* Group commit: concurrent appends are committed together, by one call of the
  ``eventsignal_append`` function (one round trip, one transaction, one flush); each request still
  gets its own outcome. The calls go through a connection of their own, outside the pool, in
  binary both ways (see ``link.py``).
* Global order: every append transaction holds one advisory lock, so positions become visible in
  increasing order and ``read_all`` never skips an event that commits late with a lower position.
* Tenants: each stream belongs to a tenant (see :mod:`eventsignal.stores.tenancy`). Every
  statement names the tenant it reads or writes, and row-level security keeps a session to the
  tenant its setting ``eventsignal.tenant`` names, which the store sets for each use of a
  connection (only when it changes) and the append function for each tenant of a batch.
* Faults: a lost connection fails the command with :class:`~eventsignal.StoreUnavailable`, never
  with a success that was not committed; the pool reconnects by itself once the server is back.
  A stalled connection (open, silent) fails its command once the command's deadline passes, and
  is closed and replaced along with its idle siblings.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import select
import struct
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec

try:
    import psycopg
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg.sql import SQL, Identifier
    from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "PostgresStore needs psycopg 3 with its pool: pip install 'eventsignal[postgres]'"
    ) from exc

from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    ConcurrencyError,
    ConfigurationError,
    StoreInconsistent,
    StoreNotMigrated,
    StoreNotOpen,
    StoreUnavailable,
)
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
from eventsignal.stores.postgres.arrays import (
    batch_arrays,
    read_int_array,
    register_dumpers,
    text_array,
)
from eventsignal.stores.postgres.dcb import PostgresDcb
from eventsignal.stores.postgres.deadline import Deadline
from eventsignal.stores.postgres.held import HeldConnection
from eventsignal.stores.postgres.link import PIPELINE, AppendLink
from eventsignal.stores.postgres.notify import HEAD_POSITION, HeadWatch
from eventsignal.stores.postgres.prepared import CHUNKED, PreparedCall
from eventsignal.stores.postgres.schema import (
    EVENTS_COMPONENT,
    EVENTS_MIGRATIONS,
    KEYED_APPEND_FUNCTION,
    migrate_component,
    schema_version,
)
from eventsignal.stores.rows import read_metadata
from eventsignal.stores.sql import Dialect, SQLTransaction, ensure_component, for_dialect
from eventsignal.stores.sql import idempotency as keys
from eventsignal.stores.sql.batching import AppendOutcome, AppendRequest, GroupCommit
from eventsignal.stores.sql.keyed import SQLKeyedAppends
from eventsignal.stores.sql.lifecycle import SQLStreamLifecycle
from eventsignal.stores.sql.lookups import GroupLookup
from eventsignal.stores.sql.rewriting import SQLPayloadRewrite
from eventsignal.stores.sql.subscriptions import SQLSubscriptions
from eventsignal.stores.sql.tenants import (
    DEFAULT_ROWS,
    OTHER_TENANT,
    SET_TENANT_LOCAL,
    TENANT_SETTING,
    TENANTS,
    listing,
)
from eventsignal.stores.tenancy import DEFAULT_TENANT, EVERY_TENANT, TenantStore, tenant_store

_Connection = AsyncConnection[TupleRow]

# Metadata is mostly '{}': the server says so with a NULL, so that no row decodes JSON for it.
_METADATA = "CASE WHEN metadata = '{}' THEN NULL ELSE metadata::text END"
# One aggregate's rows leave out its name and id: the caller knows them. The default tenant's
# statements name it as a constant, so they take the parameters they always took; another
# tenant's take its name last (see _of_tenant).
_READ_AGGREGATE = (
    f"SELECT position, event_id, version, name, timestamp, data, {_METADATA}"
    " FROM eventsignal_events"
    " WHERE aggregate_name = %s AND aggregate_id = %s AND version > %s AND tenant = ''"
    " ORDER BY version"
)
_READ_AGGREGATE_PAGE = f"{_READ_AGGREGATE} LIMIT %s"
# What a rebuild folds: each event's version, name and data, nothing else (see FoldReads),
# prepared on each connection and handed over in chunks as the server sends them; without
# chunks (libpq before 17), read whole through psycopg.
_FOLD_ROWS_SQL = (
    "SELECT version, name, data FROM eventsignal_events"
    " WHERE aggregate_name = $1 AND aggregate_id = $2 AND version > $3 AND tenant = ''"
    " ORDER BY version"
)
_FOLD_ROWS = PreparedCall("eventsignal_fold_rows", _FOLD_ROWS_SQL)
_FOLD_ROWS_OF = PreparedCall(
    "eventsignal_fold_rows_of", _FOLD_ROWS_SQL.replace("tenant = ''", "tenant = $4")
)
_READ_AGGREGATE_DATA = _FOLD_ROWS_SQL.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s")
_FOLD_CHUNK = 1000  # rows handed over at a time
_OTHER_TENANT = for_dialect(OTHER_TENANT, "postgres")
_EVENT_COLUMNS = "position, event_id, aggregate_name, aggregate_id, version, name, timestamp, data"
_READ_ALL = (
    f"SELECT {_EVENT_COLUMNS}, {_METADATA} FROM eventsignal_events"
    f" WHERE {DEFAULT_ROWS} AND position > %s ORDER BY position LIMIT %s"
)
_READ_ALL_OF = (
    f"SELECT {_EVENT_COLUMNS}, {_METADATA} FROM eventsignal_events"
    f" WHERE {_OTHER_TENANT} AND position > %s ORDER BY position LIMIT %s"
)
_READ_EVERY = (
    f"SELECT {_EVENT_COLUMNS}, {_METADATA}, tenant FROM eventsignal_events"
    " WHERE position > %s ORDER BY position LIMIT %s"
)
_EXISTS = (
    "SELECT 1 FROM eventsignal_aggregates"
    " WHERE aggregate_name = %s AND aggregate_id = %s AND tenant = ''"
)
_HEAD = (
    f"SELECT position FROM eventsignal_events WHERE {DEFAULT_ROWS} ORDER BY position DESC LIMIT 1"
)
_HEAD_OF = (
    f"SELECT position FROM eventsignal_events WHERE {_OTHER_TENANT} ORDER BY position DESC LIMIT 1"
)
_SET_TENANT = f"SELECT set_config('{TENANT_SETTING}', %s, false)"
_APPEND = (
    "SELECT outcomes, positions FROM eventsignal_append(%b, %b, %b::text[], %b::text[],"
    " %b::int4[], %b::int4[], %b::bool[], %b::int4[], %b::uuid[], %b::int4[], %b::text[],"
    " %b::timestamptz[], %b::bytea[], %b::text[])"
)
# The same call, prepared on the append link's connection (see link.py).
_LINK_APPEND = b"eventsignal_append_batch"
_PREPARE_APPEND = (
    "PREPARE eventsignal_append_batch (bigint, text, text[], text[], int4[], int4[], bool[],"
    " int4[], uuid[], int4[], text[], timestamptz[], bytea[], text[]) AS"
    " SELECT outcomes, positions FROM eventsignal_append($1, $2, $3, $4, $5, $6, $7, $8, $9,"
    " $10, $11, $12, $13, $14)"
)
# A batch holding other tenants' requests, each request's tenant first (see the events schema).
_APPEND_TENANTS = (
    "SELECT outcomes, positions FROM eventsignal_append_tenants(%b, %b, %b::text[], %b::text[],"
    " %b::text[], %b::int4[], %b::int4[], %b::bool[], %b::int4[], %b::uuid[], %b::int4[],"
    " %b::text[], %b::timestamptz[], %b::bytea[], %b::text[])"
)
_ACCEPTED, _NOT_FOUND, _TAKEN = -1, -2, -3
# Backdating a creation record (a copy keeps the original moment) in the append's transaction.
_BACKDATE = (
    "UPDATE eventsignal_aggregates SET created_at = %s"
    " WHERE aggregate_name = %s AND aggregate_id = %s AND tenant = %s"
)
_SET_TENANT_LOCAL = for_dialect(SET_TENANT_LOCAL, "postgres")
_VERSION_CONSTRAINT = "eventsignal_events_stream_version_key"
_KEY_CONSTRAINT = f"{keys.TABLE}_pkey"
_KEY_MIGRATIONS = [[*keys.MIGRATIONS["postgres"][0], KEYED_APPEND_FUNCTION]]
_APPEND_KEYED = (
    "SELECT outcomes, positions FROM eventsignal_append_keyed(%b, %b, %b::text[], %b::text[],"
    " %b::int4[], %b::int4[], %b::bool[], %b::int4[], %b::uuid[], %b::int4[], %b::text[],"
    " %b::timestamptz[], %b::bytea[], %b::text[], %s::int4[], %s::text[], %s::text[],"
    " %s::timestamptz[], %s::timestamptz[], %s::int4[])"
)
# The keys asked for by a group of lookups, as (name, id, key) arrays.
_FIND_KEYS = (
    f"SELECT k.aggregate_name, k.aggregate_id, k.key, k.digest, k.version, k.recorded_at"
    f" FROM {keys.TABLE} AS k JOIN unnest(%s::text[], %s::text[], %s::text[]) AS w(n, i, key)"
    " ON k.aggregate_name = w.n AND k.aggregate_id = w.i AND k.key = w.key"
)
_NO_CUTOFF = datetime(1, 1, 1, tzinfo=UTC)  # before every key: no age limit
_LOCK_KEY = struct.Struct("!q").pack  # the advisory lock key as a binary bigint

_encode_metadata = msgspec.json.Encoder().encode


class PostgresStore(
    StoreLifecycle, SQLSubscriptions, SQLStreamLifecycle, SQLPayloadRewrite, SQLKeyedAppends
):
    """A :class:`~eventsignal.stores.sql.SQLStore` on PostgreSQL.

    ``dsn`` is a libpq connection string or URL. The schema must be migrated first, explicitly
    (``await store.migrate()`` or ``eventsignal migrate <url>``) or by passing ``migrate=True``.
    ``schema`` puts every table in that PostgreSQL schema (created by the migration) instead of
    the connection's default. ``min_size``/``max_size`` bound the connection pool (plus two
    connections of the store's own: one sends the group commits, one listens for appends,
    opened when a follower first waits); ``max_batch`` bounds the appends committed together.

    ``timeout`` (seconds) bounds every database command twice: waiting for a pooled connection,
    then waiting for the server's answer (each statement, and the commit, inside
    :meth:`transaction`; migrations are not bounded). A command that misses either fails with
    :class:`~eventsignal.StoreUnavailable`, saying "may or may not be stored" when it had already
    sent a commit; an append queued behind a stalled batch therefore waits at most about two
    timeouts. When an answer is late, the connection's socket is shut down (cancelling a psycopg
    command would wait on the dead connection again), and the pool's idle connections are
    replaced too, since they likely share the broken path. Connections also use TCP keepalives
    and ``tcp_user_timeout`` of a few timeouts, unless the DSN sets them, so a peer that vanished
    is noticed on idle connections as well. A server-side ``statement_timeout`` would not help:
    it needs a server that still hears the client.
    """

    dialect: Dialect = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        migrate: bool = False,
        min_size: int = 1,
        max_size: int = 10,
        max_batch: int = 500,
        schema: str | None = None,
        timeout: float = 5.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.timeout = timeout
        self._migrate_on_open = migrate
        self._min_size = min_size
        self._max_size = max_size
        self._poll_interval = poll_interval
        self._group = GroupCommit(
            self._commit_batch, max_batch=max_batch, pipelined=_linked if PIPELINE else None
        )
        self._link = AppendLink(
            self._link_connection, {_LINK_APPEND: _PREPARE_APPEND}, timeout, self._replace_idle
        )
        self._lookups: GroupLookup[tuple[str, str, str], RecordedCommand | None] = GroupLookup(
            self._find_commands, max_batch=max_batch
        )
        self._max_batch = max_batch
        self._dcb: PostgresDcb | None = None
        self._pool: AsyncConnectionPool[_Connection] | None = None
        self._watch: HeadWatch | None = None
        self._users = 0
        self._opening = asyncio.Lock()
        self._lock_key = 0
        self._channel = ""
        self._appends = self._events = self._transactions = 0
        self._draining: asyncio.Task[None] | None = None
        # The tenant each pooled session's setting names (see _connection); a session missing
        # here is in an unknown state, and gets the setting before its next use.
        self._tenant_of: weakref.WeakKeyDictionary[_Connection, str] = weakref.WeakKeyDictionary()

    # Life cycle

    @property
    def dcb(self) -> PostgresDcb:
        """Reads and appends by query (dynamic consistency boundaries) over this store's log."""
        if self._dcb is None:
            self._dcb = PostgresDcb(self, self._max_batch)
        return self._dcb

    @property
    def stats(self) -> StoreStats:
        """A snapshot of the counters; compare two to see how appends shared transactions."""
        return StoreStats(self._appends, self._events, self._transactions)

    async def open(self) -> None:
        async with self._opening:
            if self._users == 0:
                await self._start()
            self._users += 1

    async def close(self) -> None:
        async with self._opening:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                await self._stop()

    async def _start(self) -> None:
        pool: AsyncConnectionPool[_Connection] = AsyncConnectionPool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs=self._connect_options(),
            configure=self._configure,
            check=_check_connection,
            timeout=self.timeout,
            # Give up a failing reconnection early: the next request then starts a fresh attempt,
            # instead of waiting out an exponential backoff grown during a long outage.
            reconnect_timeout=self.timeout,
            open=False,
            name="eventsignal",
        )
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL ({_where(self.dsn)}) within {self.timeout}s: "
                f"{await self._connect_error()}"
            ) from exc
        try:
            async with pool.connection() as conn:
                await self._check_schema(conn)
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
                head = await (await conn.execute(HEAD_POSITION)).fetchone()
        except BaseException:
            await pool.close()
            raise
        schema = row[0] if row else None
        if schema is None:
            await pool.close()
            raise ConfigurationError("PostgreSQL search_path names no existing schema")
        self._lock_key = _lock_key(f"eventsignal.append:{schema}")
        self._channel = _channel(schema)
        self._pool = pool
        self._watch = HeadWatch(
            self._listen_connection,
            self._channel,
            poll_interval=self._poll_interval,
            timeout=self.timeout,
        )
        self._watch.advance(int(head[0]) if head else 0)  # it listens once a follower waits

    async def _stop(self) -> None:
        await self._group.close()
        await self._link.close()
        if self._dcb is not None:
            await self._dcb.close()
        if self._draining is not None:
            await self._draining
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        if self._pool is not None:
            # A pool worker stuck on a silent connection would hold closing for its own default.
            await self._pool.close(timeout=self.timeout)
            self._pool = None

    async def _connect_error(self) -> str:
        """Why connecting fails; the pool only says that it timed out."""
        try:
            conn = await AsyncConnection.connect(self.dsn, **self._connect_options())
        except psycopg.Error as exc:
            return str(exc).strip() or type(exc).__name__
        await conn.close()
        return "connections were refused or too slow"

    def _connect_options(self) -> dict[str, Any]:
        seconds = max(1, round(self.timeout))
        # Probe an idle connection after one timeout, give up after three unanswered probes; data
        # left unacknowledged that long drops the connection too.
        defaults: dict[str, Any] = {
            "connect_timeout": seconds,
            "keepalives": 1,
            "keepalives_idle": seconds,
            "keepalives_interval": seconds,
            "keepalives_count": 3,
        }
        if psycopg.pq.version() >= 120000:  # libpq knows tcp_user_timeout since version 12
            defaults["tcp_user_timeout"] = 4 * seconds * 1000
        given = psycopg.conninfo.conninfo_to_dict(self.dsn)
        options: dict[str, Any] = {"autocommit": True}
        options.update((key, value) for key, value in defaults.items() if key not in given)
        options["client_encoding"] = "UTF8"  # appends send text as UTF-8 (see arrays.py)
        return options

    async def _configure(self, conn: _Connection) -> None:
        """Every connection reads timestamps in UTC, with ``schema`` sees only that schema, and
        can send the arrays of an append."""
        register_dumpers(conn.adapters)
        # A new connection can stall too; cut, it fails and the pool tries again.
        with Deadline(conn, self.timeout):
            await conn.execute("SET TIME ZONE 'UTC'")
            if self.schema is not None:
                await conn.execute(SQL("SET search_path TO {}").format(Identifier(self.schema)))
        self._tenant_of[conn] = DEFAULT_TENANT  # a new session reads the default tenant's rows

    async def _link_connection(self) -> _Connection:
        """A connection of the append link's own, opened once the pool serves again: after an
        outage, appends come back no sooner than reads, whose connections the pool replaces at
        its own pace."""
        async with self._connection("appending events"):
            pass
        return await self._listen_connection()

    async def _listen_connection(self) -> _Connection:
        conn = await AsyncConnection.connect(self.dsn, **self._connect_options())
        await self._configure(conn)
        return conn

    async def _check_schema(self, conn: _Connection) -> None:
        version = await schema_version(conn, EVENTS_COMPONENT)
        if version < len(EVENTS_MIGRATIONS) and self._migrate_on_open:
            await migrate_component(conn, EVENTS_COMPONENT, EVENTS_MIGRATIONS, schema=self.schema)
        elif version < len(EVENTS_MIGRATIONS):
            where = f"schema {self.schema!r} of " if self.schema else ""
            raise StoreNotMigrated(
                f"the eventsignal tables in {where}{_where(self.dsn)} are not migrated (version "
                f"{version} of {len(EVENTS_MIGRATIONS)}): run `await store.migrate()` or "
                "`eventsignal migrate <url>`, or open it with PostgresStore(..., migrate=True)",
                component=EVENTS_COMPONENT,
                found=version,
                expected=len(EVENTS_MIGRATIONS),
            )
        elif version > len(EVENTS_MIGRATIONS):
            raise StoreNotMigrated(
                f"the eventsignal tables are at version {version}, newer than this eventsignal "
                f"({len(EVENTS_MIGRATIONS)}): upgrade eventsignal",
                component=EVENTS_COMPONENT,
                found=version,
                expected=len(EVENTS_MIGRATIONS),
            )

    # Migrations

    async def migrate(self) -> None:
        """Create or upgrade the store's own tables. Idempotent; safe from several processes."""
        await self.migrate_component(EVENTS_COMPONENT, EVENTS_MIGRATIONS)

    async def migrate_component(self, component: str, migrations: Sequence[Sequence[str]]) -> None:
        """Apply the ``migrations`` of one schema component not applied yet, in order."""
        async with self._any_connection("migrating") as conn:  # may take long: no deadline
            await migrate_component(conn, component, migrations, schema=self.schema)

    @asynccontextmanager
    async def _any_connection(self, action: str) -> AsyncIterator[_Connection]:
        """A pooled connection when open, else a one-off one (migrations may run before open)."""
        if self._pool is not None:
            async with self._connection(action, bounded=False) as conn:
                yield conn
            return
        try:
            conn = await AsyncConnection.connect(self.dsn, **self._connect_options())
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {exc}") from exc
        async with conn:
            await self._configure(conn)  # the schema may not exist yet: migrating creates it
            yield conn

    # SQL access

    @asynccontextmanager
    async def _connection(
        self,
        action: str,
        *,
        bounded: bool = True,
        unsure: str = "",
        tenant: str | None = DEFAULT_TENANT,
    ) -> AsyncIterator[_Connection]:
        """A pooled connection; when ``bounded``, its block must end within the store's timeout.

        The session's setting names ``tenant`` (``"*"``: a reader of every tenant), whose rows
        alone row-level security then shows it; ``None`` leaves it as it is (the append
        functions set it themselves). A lost or late connection raises
        :class:`~eventsignal.StoreUnavailable`, with ``unsure`` added once the block ran, since
        a command may then have reached the server.
        """
        pool = self._pool
        if pool is None:
            raise _not_open()
        try:
            async with pool.connection() as conn:
                with self._guarded(conn, action, bounded=bounded, unsure=unsure):
                    if tenant is not None and self._tenant_of.get(conn) != tenant:
                        await self._enter(conn, tenant)
                    yield conn
        except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {exc}") from exc

    async def _enter(self, conn: _Connection, tenant: str) -> None:
        """Set the session's tenant (outside any transaction, so it lasts until changed)."""
        tenants = self._tenant_of
        tenants.pop(conn, None)  # unknown until the server says it is done
        await conn.execute(_SET_TENANT, (tenant,), prepare=True)
        tenants[conn] = tenant

    @asynccontextmanager
    async def _held_connection(
        self, held: HeldConnection[_Connection], action: str, *, unsure: str = ""
    ) -> AsyncIterator[_Connection]:
        """Like :meth:`_connection`, on the connection ``held`` keeps between one serial
        writer's commands; one whose block fails goes back to the pool."""
        pool = self._pool
        if pool is None:
            raise _not_open()
        try:
            conn = await held.take(pool)
        except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {exc}") from exc
        try:
            with self._guarded(conn, action, unsure=unsure):
                # DCB writes the default tenant's log: the session must read it.
                if self._tenant_of.get(conn) != DEFAULT_TENANT:
                    await self._enter(conn, DEFAULT_TENANT)
                yield conn
        except BaseException:
            await held.give_back(conn)
            raise
        held.keep(conn)

    @contextmanager
    def _guarded(
        self, conn: _Connection, action: str, *, bounded: bool = True, unsure: str = ""
    ) -> Iterator[None]:
        """Cut ``conn`` unless the block ends within the timeout (when ``bounded``); a lost or
        late connection, or a server that cannot serve now, raises
        :class:`~eventsignal.StoreUnavailable`."""
        with Deadline(conn, self.timeout if bounded else None, self._replace_idle) as guard:
            try:
                yield
            except psycopg.Error as exc:
                if not _unavailable_now(conn, exc):
                    raise  # the server's answer to this command, for the caller
                raise _unavailable(action, exc, guard, conn, unsure) from exc

    def _replace_idle(self) -> None:
        """A connection stalled: its idle siblings likely share its broken path, replace them."""
        pool = self._pool
        if pool is not None and self._draining is None:
            self._draining = asyncio.create_task(self._drain(pool))
            if self._dcb is not None:
                self._dcb.let_go()

    async def _drain(self, pool: AsyncConnectionPool[_Connection]) -> None:
        try:
            await pool.drain()
        except PoolClosed:
            pass
        finally:
            self._draining = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """One transaction on one pooled connection, committed when the block ends cleanly.

        The block itself has no deadline (a subscription handler runs in it); each statement and
        the commit do.
        """
        async with self._connection("running a transaction", bounded=False) as conn:
            tx = PostgresTransaction(conn, self.timeout, self._replace_idle)
            await tx.execute("BEGIN")
            try:
                yield tx
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()

    # Writing

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
        if self._pool is None:
            raise _not_open()
        # Through group commit: concurrent creations share a transaction with appends.
        return await self._group.append(request)

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
        if self._pool is None:
            raise _not_open()
        return await self._group.append(request)

    async def _commit_batch(self, requests: list[AppendRequest]) -> list[AppendOutcome]:
        try:
            return await self._commit(requests)
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            # One request the database refused (a value it cannot store, an event id used twice,
            # a row written around this store) must not fail the others: retry them one by one.
            if len(requests) > 1:
                return [await self._commit_alone(request) for request in requests]
            refusal = _refusal(requests[0], exc)
            if refusal is exc:
                raise
            raise refusal from exc

    async def _commit_alone(self, request: AppendRequest) -> AppendOutcome:
        # Any failure is this request's own outcome: the ones retried before it may already be
        # committed, and must still be told so.
        try:
            (outcome,) = await self._commit_batch([request])
        except Exception as exc:
            return exc
        return outcome

    async def _commit(self, requests: list[AppendRequest]) -> list[AppendOutcome]:
        if any(request.tenant for request in requests):
            return await self._commit_tenants(requests)
        try:
            arrays = batch_arrays(requests, _encode_metadata)
        except struct.error as exc:  # what the server would refuse too: fails only its request
            raise psycopg.DataError(f"a version out of range for INTEGER: {exc}") from exc
        if any(request.key or request.created_at for request in requests):
            params: tuple[Any, ...] = (self._lock_key, self._channel, *arrays)
            append = _APPEND
            if any(request.key for request in requests):
                append, params = _APPEND_KEYED, (*params, *_key_arrays(requests))
            # The default tenant's function writes as its session reads: the default tenant's.
            return await self._call(append, params, requests, DEFAULT_TENANT)
        # The common batch: through the append link (see link.py), whose session is the default
        # tenant's, as a new session is and as nothing changes it. The call commits on its own:
        # once it is sent, a lost answer is a lost outcome.
        unsure = "the events may or may not be stored, re-read the aggregate"
        sent = [_LOCK_KEY(self._lock_key), self._channel.encode(), *arrays]
        result = await self._link.call(_LINK_APPEND, sent, "appending events", unsure)
        codes = read_int_array(result.get_value(0, 0))
        return self._outcomes(requests, codes, read_int_array(result.get_value(0, 1)))

    async def _commit_tenants(self, requests: list[AppendRequest]) -> list[AppendOutcome]:
        """A batch holding other tenants' requests: one call, each request with its tenant.

        Idempotency keys are the default tenant's alone, and their function takes no tenants:
        keyed requests, if any, are committed first, by a call of their own.
        """
        keyed = [request for request in requests if request.key is not None]
        if keyed:
            rest = [request for request in requests if request.key is None]
            done: dict[int, AppendOutcome] = {}
            for part in (keyed, rest):
                if part:
                    done.update(zip(map(id, part), await self._commit(part), strict=True))
            return [done[id(request)] for request in requests]
        try:
            arrays = batch_arrays(requests, _encode_metadata)
        except struct.error as exc:
            raise psycopg.DataError(f"a version out of range for INTEGER: {exc}") from exc
        tenants = text_array([request.tenant for request in requests])
        params = (self._lock_key, self._channel, tenants, *arrays)
        # The tenants' function names the tenants it writes for row-level security itself.
        return await self._call(_APPEND_TENANTS, params, requests, None)

    async def _call(
        self,
        append: str,
        params: tuple[Any, ...],
        requests: list[AppendRequest],
        tenant: str | None,
    ) -> list[AppendOutcome]:
        """Commit a batch by one call of an append function, on a pooled session of ``tenant``
        (see :meth:`_connection`); each request's outcome."""
        # The call commits on its own: once it is sent, a lost answer is a lost outcome.
        unsure = "the events may or may not be stored, re-read the aggregate"
        async with self._connection("appending events", unsure=unsure, tenant=tenant) as conn:
            if any(request.created_at for request in requests):
                async with conn.transaction():
                    row = await (await conn.execute(append, params, prepare=True)).fetchone()
                    await self._backdate(conn, requests, row)
            else:
                row = await (await conn.execute(append, params, prepare=True)).fetchone()
        if row is None:
            raise StoreInconsistent("eventsignal_append returned no row")
        return self._outcomes(requests, row[0], row[1])

    def _outcomes(
        self, requests: list[AppendRequest], codes: list[int], positions: list[int]
    ) -> list[AppendOutcome]:
        """Each request's positions or error, from the append function's answer."""
        self._transactions += 1
        outcomes: list[AppendOutcome] = []
        offset = 0
        for request, code in zip(requests, codes, strict=True):
            if code == _ACCEPTED:
                count = len(request.events)
                outcomes.append(positions[offset : offset + count])
                offset += count
                self._appends += 1
                self._events += count
            else:
                outcomes.append(_refused(request, code))
        if positions and self._watch is not None:
            self._watch.advance(positions[-1])
        return outcomes

    @staticmethod
    async def _backdate(
        conn: _Connection, requests: list[AppendRequest], row: tuple[Any, ...] | None
    ) -> None:
        """Give the aggregates these requests created the moments they ask for, each under its
        tenant's setting (the transaction's, until it ends)."""
        codes: list[int] = [] if row is None else row[0]
        backdated: dict[str, list[tuple[Any, ...]]] = {}
        for request, code in zip(requests, codes, strict=True):
            if request.created_at is not None and code == _ACCEPTED:
                backdated.setdefault(request.tenant, []).append(
                    (
                        request.created_at,
                        request.aggregate_name,
                        request.aggregate_id,
                        request.tenant,
                    )
                )
        for tenant, rows in backdated.items():
            await conn.execute(_SET_TENANT_LOCAL, (tenant,))
            async with conn.cursor() as cursor:
                await cursor.executemany(_BACKDATE, rows)

    # Idempotent commands (see eventsignal.stores.idempotency): a keyed request joins the group
    # commit like any other; its batch then runs in an explicit transaction that also records
    # the keys of the requests accepted.

    async def _append_keyed(self, request: AppendRequest) -> Sequence[int]:
        if self._pool is None:
            raise _not_open()
        await ensure_component(self, keys.COMPONENT, _KEY_MIGRATIONS)
        return await self._group.append(request)

    async def find_command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        key: str,
        retention: KeyRetention = DEFAULT_RETENTION,
    ) -> RecordedCommand | None:
        # Retention is applied when keys are recorded: what is found here is kept.
        await ensure_component(self, keys.COMPONENT, _KEY_MIGRATIONS)
        if self._pool is None:
            raise _not_open()
        # Through group lookup: concurrent keyed commands share one query.
        return await self._lookups.ask((aggregate_name, aggregate_id, key))

    async def _find_commands(
        self, wanted: list[tuple[str, str, str]]
    ) -> list[RecordedCommand | None]:
        columns = [list(column) for column in zip(*wanted, strict=True)]
        async with self._connection("reading idempotency keys") as conn:
            rows = await (await conn.execute(_FIND_KEYS, columns, prepare=True)).fetchall()
        found = {
            (name, aggregate_id, key): RecordedCommand(
                key=key, digest=digest, version=int(version), recorded_at=moment
            )
            for name, aggregate_id, key, digest, version, moment in rows
        }
        return [found.get(question) for question in wanted]

    # Appends in the caller's transaction (SharedTransactions)

    async def _append_in(self, tx: SQLTransaction, request: AppendRequest) -> Sequence[int]:
        """The group commit's call for one request, on the caller's transaction: its advisory
        lock is then held until that transaction ends, which keeps positions visible in order."""
        if not isinstance(tx, PostgresTransaction):
            raise ConfigurationError(f"append_in needs a transaction of {self!r}.transaction()")
        try:
            arrays = batch_arrays([request], _encode_metadata)
        except struct.error as exc:
            raise ConfigurationError(f"a version out of range for INTEGER: {exc}") from exc
        conn = tx._conn
        async with tx._bounded("appending events"):
            try:
                migrate = request.key is not None and keys.COMPONENT not in self._migrated
                if migrate:  # in a savepoint of the caller's transaction
                    await migrate_component(
                        conn, keys.COMPONENT, _KEY_MIGRATIONS, schema=self.schema
                    )
                    self._migrated.add(keys.COMPONENT)
                params: tuple[Any, ...] = (self._lock_key, self._channel, *arrays)
                append = _APPEND
                if request.key is not None:
                    append, params = _APPEND_KEYED, (*params, *_key_arrays([request]))
                row = await (await conn.execute(append, params, prepare=True)).fetchone()
                if row is None:
                    raise StoreInconsistent("eventsignal_append returned no row")
                if row[0][0] != _ACCEPTED:
                    raise _refused(request, row[0][0])
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                refusal = _refusal(request, exc)
                if refusal is exc:
                    raise
                raise refusal from exc
        self._appends += 1
        self._events += len(request.events)
        positions: list[int] = row[1]
        return positions

    @property
    def _migrated(self) -> set[str]:
        """The components this store object knows to be migrated (see ``ensure_component``)."""
        done: set[str] | None = getattr(self, "_components_migrated", None)
        if done is None:
            done = set()
            self._components_migrated = done
        return done

    # Stream lifecycle: the same ordering lock and wake-up as appends

    async def _lifecycle_begin(self, tx: SQLTransaction) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))

    async def _lifecycle_announce(self, tx: SQLTransaction, position: int) -> None:
        await tx.execute("SELECT pg_notify(%s, %s)", (self._channel, str(position)))

    # Tenants

    def for_tenant(self, tenant: str | None) -> TenantStore:
        """This store as one tenant sees it (``None``: every tenant, read-only)."""
        return tenant_store(self, tenant)

    async def tenants(self) -> Sequence[str]:
        """The tenants holding at least one stream, sorted (``""`` is the default one)."""
        async with self._connection("listing tenants", tenant=EVERY_TENANT) as conn:
            rows = await (await conn.execute(for_dialect(TENANTS, "postgres"))).fetchall()
        return [row[0] for row in rows]

    # Reading

    async def exists(
        self, aggregate_name: str, aggregate_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> bool:
        statement: str = _EXISTS
        params: tuple[Any, ...] = (aggregate_name, aggregate_id)
        if tenant:
            statement, params = _of_tenant(_EXISTS), (*params, tenant)
        async with self._connection("reading", tenant=tenant) as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchone() is not None

    async def read_aggregate(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        rows = _AggregateRows(aggregate_name, aggregate_id, tenant)
        statement: str = _READ_AGGREGATE
        params: tuple[Any, ...] = (aggregate_name, aggregate_id, after_version)
        if tenant:
            statement, params = _of_tenant(_READ_AGGREGATE), (*params, tenant)
        async with self._connection("reading an aggregate", tenant=tenant) as conn:
            cursor = conn.cursor(binary=True, row_factory=rows.maker)
            await cursor.execute(statement, params)
            return await cursor.fetchall()

    async def read_aggregate_data(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int = 0,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> AsyncGenerator[Sequence[FoldRow], None]:
        """``(version, name, data)`` of the aggregate's events after ``after_version``, as
        tuples, in chunks handed over as the server sends them: the caller folds the first
        while the rest is on its way. The connection goes back to the pool once the answer is
        read, however slowly the caller folds, and the read runs to its end even if the caller
        stops early, so the connection is left clean."""
        if not CHUNKED:
            rows = await self._fold_rows(aggregate_name, aggregate_id, after_version, tenant)
            if rows:
                yield rows
            return
        arrived: deque[Sequence[FoldRow]] = deque()
        more = asyncio.Event()

        def keep(rows: list[tuple[Any, ...]]) -> None:
            arrived.append(rows)
            more.set()

        reading = asyncio.ensure_future(
            self._fold_chunks(aggregate_name, aggregate_id, after_version, tenant, keep)
        )
        reading.add_done_callback(lambda _: more.set())
        try:
            while True:
                if arrived:
                    yield arrived.popleft()
                elif reading.done():
                    reading.result()  # the read's error, if it failed
                    return
                else:
                    more.clear()
                    await more.wait()
        finally:
            if not reading.done():
                reading.add_done_callback(_retrieved)  # ends alone, within the deadline

    async def _fold_chunks(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int,
        tenant: str,
        into: Callable[[list[tuple[Any, ...]]], object],
    ) -> None:
        params = [aggregate_name.encode(), aggregate_id.encode(), b"%d" % after_version]
        statement = _FOLD_ROWS
        if tenant:
            statement = _FOLD_ROWS_OF
            params.append(tenant.encode())
        async with self._connection("reading an aggregate", tenant=tenant) as conn:
            await statement.chunks(conn, params, _FOLD_CHUNK, into)

    async def _fold_rows(
        self, aggregate_name: str, aggregate_id: str, after_version: int, tenant: str
    ) -> Sequence[FoldRow]:
        statement: str = _READ_AGGREGATE_DATA
        params: tuple[Any, ...] = (aggregate_name, aggregate_id, after_version)
        if tenant:
            statement, params = _of_tenant(_READ_AGGREGATE_DATA), (*params, tenant)
        async with self._connection("reading an aggregate", tenant=tenant) as conn:
            cursor = conn.cursor(binary=True)
            await cursor.execute(statement, params, prepare=True)
            return await cursor.fetchall()

    async def read_aggregate_page(
        self,
        aggregate_name: str,
        aggregate_id: str,
        after_version: int,
        limit: int,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> Sequence[StoredEvent]:
        rows = _AggregateRows(aggregate_name, aggregate_id, tenant)
        statement: str = _READ_AGGREGATE_PAGE
        params: tuple[Any, ...] = (aggregate_name, aggregate_id, after_version, limit)
        if tenant:
            statement = _of_tenant(_READ_AGGREGATE_PAGE)
            params = (aggregate_name, aggregate_id, after_version, tenant, limit)
        async with self._connection("reading an aggregate", tenant=tenant) as conn:
            cursor = conn.cursor(binary=True, row_factory=rows.maker)
            await cursor.execute(statement, params)
            return await cursor.fetchall()

    async def read_all(
        self, after_position: int = 0, limit: int = 1000, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[StoredEvent]:
        statement: str = _READ_ALL
        params: tuple[Any, ...] = (after_position, limit)
        rows: Callable[[object], Callable[[Sequence[Any]], StoredEvent]] = _any_rows
        if tenant is None:
            statement, rows, tenant = _READ_EVERY, _every_tenants_rows, EVERY_TENANT
        elif tenant:
            statement, params = _READ_ALL_OF, (tenant, after_position, limit)
            rows = _TenantRows(tenant).maker
        async with self._connection("reading all events", tenant=tenant) as conn:
            cursor = conn.cursor(binary=True, row_factory=rows)
            await cursor.execute(statement, params)
            return await cursor.fetchall()

    async def head_position(self, *, tenant: str | None = DEFAULT_TENANT) -> int:
        """The position of the last event of ``tenant`` (``None``: of the whole log)."""
        statement: str = HEAD_POSITION  # a function that reads every tenant's events
        params: tuple[str, ...] = ()
        if tenant is not None:
            statement = _HEAD
            if tenant:
                statement, params = _HEAD_OF, (tenant,)
        async with self._connection("reading the head position", tenant=tenant) as conn:
            row = await (await conn.execute(statement, params)).fetchone()
        return int(row[0]) if row else 0

    async def _log_head(self) -> int:
        return await self.head_position(tenant=None)

    async def aggregates(
        self, aggregate_name: str | None = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> Sequence[AggregateInfo]:
        statement, params = listing(aggregate_name, tenant)
        setting = EVERY_TENANT if tenant is None else tenant
        async with self._connection("listing aggregates", tenant=setting) as conn:
            rows = await (await conn.execute(for_dialect(statement, "postgres"), params)).fetchall()
        return [
            AggregateInfo(
                aggregate_name=name,
                aggregate_id=id_,
                version=version,
                created_at=created,
                tenant=owner,
            )
            for name, id_, version, created, owner in rows
        ]

    async def wait_for_events(self, after_position: int) -> None:
        watch = self._watch
        if watch is None:
            raise _not_open()
        await watch.wait(after_position, self._log_head)

    def __repr__(self) -> str:
        schema = f" schema={self.schema!r}" if self.schema else ""
        return f"<PostgresStore {_where(self.dsn)}{schema}>"


class PostgresTransaction:
    """A :class:`~eventsignal.stores.sql.SQLTransaction` on one pooled psycopg connection.

    Every statement must be answered within ``timeout`` seconds, else the connection is cut and
    the statement fails with :class:`~eventsignal.StoreUnavailable`.
    """

    __slots__ = ("_conn", "_on_stall", "_timeout")

    def __init__(
        self, conn: _Connection, timeout: float, on_stall: Callable[[], object] | None = None
    ) -> None:
        self._conn = conn
        self._timeout = timeout
        self._on_stall = on_stall

    @asynccontextmanager
    async def _bounded(self, action: str, unsure: str = "") -> AsyncIterator[None]:
        with Deadline(self._conn, self._timeout, self._on_stall) as guard:
            try:
                yield
            except psycopg.Error as exc:
                if not _unavailable_now(self._conn, exc):
                    raise
                raise _unavailable(action, exc, guard, self._conn, unsure) from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._bounded("running a transaction"):
            cursor = await self._conn.execute(sql.encode(), params or None)
            return cursor.rowcount

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        async with self._bounded("running a transaction"), self._conn.cursor() as cursor:
            await cursor.executemany(sql.encode(), params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._bounded("running a transaction"):
            cursor = await self._conn.execute(sql.encode(), params or None)
            return await cursor.fetchall()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        async with self._bounded("running a transaction"):
            cursor = await self._conn.execute(sql.encode(), params or None)
            return await cursor.fetchone()

    async def commit(self) -> None:
        async with self._bounded("committing", "the transaction may or may not be committed"):
            await self._conn.execute(b"COMMIT")

    async def rollback(self) -> None:
        """Roll back if the connection still works; a broken one rolls back on the server."""
        if self._conn.broken:
            return
        try:
            async with self._bounded("rolling back"):
                await self._conn.execute(b"ROLLBACK")
        except StoreUnavailable:
            pass  # the server ends the transaction when the connection goes


def _unavailable_now(conn: _Connection, exc: psycopg.Error) -> bool:
    """Whether ``exc`` says the database cannot serve now (connection gone, disk full, a lock or
    statement timeout), not that this command's data was refused (left to the caller).

    The server ending a session says why first (an idle transaction's timeout is an
    ``InternalError``, a terminated backend an ``OperationalError``); either way it is gone.
    """
    return isinstance(exc, psycopg.OperationalError) or conn.broken


def _unavailable(
    action: str, exc: Exception, guard: Deadline, conn: _Connection, unsure: str
) -> StoreUnavailable:
    """The error for a command whose connection failed, gave no answer in time, or whose
    server could not run it (a full disk, a lock or statement timeout).

    ``unsure`` is said only when the answer was lost: a server that answers with an error has
    rolled the command back.
    """
    tail = f"; {unsure}" if unsure else ""
    if guard.expired:
        return StoreUnavailable(
            f"PostgreSQL did not answer within {guard.seconds:g}s while {action}, so the "
            f"connection was closed{tail}"
        )
    if conn.broken:
        return StoreUnavailable(f"PostgreSQL connection lost while {action}{tail}: {exc}")
    undone = " (rolled back: nothing was stored)" if unsure else ""
    return StoreUnavailable(f"PostgreSQL could not complete {action}{undone}: {exc}")


class _AggregateRows:
    """Builds one aggregate's events straight from the loaded columns, with its name, id and
    tenant."""

    __slots__ = ("aggregate_id", "aggregate_name", "tenant")

    def __init__(self, aggregate_name: str, aggregate_id: str, tenant: str) -> None:
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.tenant = tenant

    def maker(self, cursor: object) -> Callable[[Sequence[Any]], StoredEvent]:
        aggregate_name, aggregate_id, tenant = self.aggregate_name, self.aggregate_id, self.tenant

        def make(values: Sequence[Any]) -> StoredEvent:
            position, event_id, version, name, timestamp, data, text = values
            if text is None:  # nearly every row: no metadata to read
                return StoredEvent(
                    id=event_id,
                    aggregate_name=aggregate_name,
                    aggregate_id=aggregate_id,
                    version=version,
                    name=name,
                    timestamp=timestamp,
                    data=data,
                    metadata={},
                    position=position,
                    tenant=tenant,
                )
            return _event(
                position,
                event_id,
                aggregate_name,
                aggregate_id,
                version,
                name,
                timestamp,
                data,
                text,
                tenant=tenant,
            )

        return make


class _TenantRows:
    """Builds events of the log of one tenant other than the default one."""

    __slots__ = ("tenant",)

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def maker(self, cursor: object) -> Callable[[Sequence[Any]], StoredEvent]:
        tenant = self.tenant

        def make(values: Sequence[Any]) -> StoredEvent:
            return _event(*values, tenant=tenant)

        return make


def _any_rows(cursor: object) -> Callable[[Sequence[Any]], StoredEvent]:
    return _stored_event


def _stored_event(values: Sequence[Any]) -> StoredEvent:
    return _event(*values)


def _every_tenants_rows(cursor: object) -> Callable[[Sequence[Any]], StoredEvent]:
    return _owned_event


def _owned_event(values: Sequence[Any]) -> StoredEvent:
    """A row that ends with its tenant."""
    return _event(*values[:-1], tenant=values[-1])


def _event(
    position: int,
    event_id: Any,
    aggregate_name: str,
    aggregate_id: str,
    version: int,
    name: str,
    timestamp: Any,
    data: bytes,
    text: str | None,
    *,
    tenant: str = DEFAULT_TENANT,
) -> StoredEvent:
    """A row as a :class:`StoredEvent`; metadata that cannot be read flags the row."""
    metadata, defect = ({}, None) if text is None else read_metadata(text)
    return StoredEvent(
        id=event_id,
        aggregate_name=aggregate_name,
        aggregate_id=aggregate_id,
        version=version,
        name=name,
        timestamp=timestamp,
        data=data,
        metadata=metadata,
        position=position,
        defect=defect,
        tenant=tenant,
    )


def _linked(request: AppendRequest) -> bool:
    """Whether ``request`` is committed through the append link, in the order sent (see
    :meth:`PostgresStore._commit`)."""
    return not (request.tenant or request.key or request.created_at)


def _retrieved(task: asyncio.Future[None]) -> None:
    """Mark the outcome of a read no one waits for any more as seen."""
    if not task.cancelled():
        task.exception()


def _refused(request: AppendRequest, code: int) -> Exception:
    """The error of a request ``eventsignal_append`` did not accept, from its outcome code."""
    name, aggregate_id = request.aggregate_name, request.aggregate_id
    if code == _TAKEN:
        return AggregateExists(name, aggregate_id)
    if code == _NOT_FOUND:
        return AggregateNotFound(name, aggregate_id)
    if is_closed_marker(code):  # archived or deleted
        return closed_error(name, aggregate_id, code)
    return ConcurrencyError(name, aggregate_id, request.expected_version, code)


def _refusal(request: AppendRequest, exc: psycopg.Error) -> Exception:
    """A constraint the database enforced, as the error of the one request that broke it."""
    constraint = exc.diag.constraint_name
    if constraint == _VERSION_CONSTRAINT:
        return ConcurrencyError(
            request.aggregate_name, request.aggregate_id, request.expected_version
        )
    if constraint == _KEY_CONSTRAINT and request.key is not None:
        return CommandKeyTaken(request.aggregate_name, request.aggregate_id, request.key.key)
    return exc


@functools.cache
def _of_tenant(statement: str) -> str:
    """The statement for a tenant other than the default one: its name is a parameter."""
    return statement.replace("tenant = ''", "tenant = %s")


def _key_arrays(requests: Sequence[AppendRequest]) -> tuple[list[Any], ...]:
    """The keyed requests of a batch as ``eventsignal_append_keyed``'s six key arrays."""
    numbers, names, digests, moments, cutoffs, keeps = [], [], [], [], [], []
    for number, request in enumerate(requests, start=1):
        key, retention = request.key, request.retention
        if key is None or retention is None:
            continue
        numbers.append(number)
        names.append(key.key)
        digests.append(key.digest)
        moments.append(key.recorded_at)
        cutoffs.append(retention.cutoff(key.recorded_at) or _NO_CUTOFF)
        keeps.append(retention.keep)
    return numbers, names, digests, moments, cutoffs, keeps


async def _check_connection(conn: _Connection) -> None:
    """Make sure a pooled connection is alive before it is handed out.

    A server that restarts, or terminates the backend, sends an error and closes the socket, so
    an idle connection with nothing to read is alive: that costs a ``select``, not the round trip
    of the pool's own check, which runs only when the server did say something.
    """
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        readable = [True]
    if readable:
        await AsyncConnectionPool.check_connection(conn)


def _lock_key(text: str) -> int:
    """A stable 64-bit advisory lock key for ``text`` (the same in every process)."""
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True
    )


def _channel(schema: str) -> str:
    """The NOTIFY channel of a schema; channel names are identifiers of at most 63 bytes."""
    if schema == "public":
        return "eventsignal_events"
    channel = f"eventsignal_events_{schema}"
    if len(channel.encode()) > 63:
        channel = (
            "eventsignal_events_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
        )
    return channel


def _where(dsn: str) -> str:
    """The server and database of a DSN, without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database"
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"database {info.get('dbname', '?')!r} on {host}:{port}"


__all__ = ["PostgresStore", "PostgresTransaction", "StoreStats"]


def _not_open() -> StoreNotOpen:
    return StoreNotOpen("the PostgresStore is not open: use `async with` or await open()")
