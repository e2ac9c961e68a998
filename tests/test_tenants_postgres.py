"""Tenants on PostgreSQL, as an application should run them: connected as a role that neither is
a superuser nor owns the tables, so row-level security binds it. The compliance suite runs
through that role, and plain psycopg queries show what a session of one tenant can see and
write, whatever its SQL says."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from eventsignal import InvalidAggregateId
from eventsignal.stores import EventStore, PostgresStore
from eventsignal.stores.sql import ensure_component
from eventsignal.stores.sql.snapshots import SQLSnapshotStore
from eventsignal.stores.sql.subscriptions import COMPONENT as SUBSCRIPTIONS
from eventsignal.stores.sql.subscriptions import MIGRATIONS as SUBSCRIPTION_MIGRATIONS
from eventsignal.testing import TenantCompliance, make_events

pytestmark = pytest.mark.postgres

# What the application's role needs, and no more (see docs/stores.md, "Tenants").
GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}",
)


def _run(dsn: str, statement: str, **names: str) -> None:
    identifiers = {key: sql.Identifier(value) for key, value in names.items()}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(**identifiers))


@pytest.fixture
def app_role(postgres_database: str) -> Iterator[str]:
    """A login role of this test's own: no superuser, owns nothing; dropped at the end."""
    role = f"eventsignal_app_{secrets.token_hex(6)}"
    _run(postgres_database, "CREATE ROLE {role} LOGIN NOSUPERUSER NOINHERIT", role=role)
    try:
        yield role
    finally:
        _run(postgres_database, "DROP OWNED BY {role}", role=role)
        _run(postgres_database, "DROP ROLE {role}", role=role)


async def _prepare(owner_dsn: str, schema: str) -> None:
    """What the tables' owner runs once: the store's tables and the components tenants use."""
    async with PostgresStore(owner_dsn, schema=schema, migrate=True) as owner:
        await SQLSnapshotStore(owner).prepare()
        await ensure_component(owner, SUBSCRIPTIONS, SUBSCRIPTION_MIGRATIONS["postgres"])


@pytest.fixture
async def app_dsn(postgres_database: str, postgres_schema: str, app_role: str) -> str:
    """The DSN of ``app_role`` on a schema the superuser migrated and granted it."""
    await _prepare(postgres_database, postgres_schema)
    for grant in GRANTS:
        _run(postgres_database, grant, schema=postgres_schema, role=app_role)
    return make_conninfo(postgres_database, user=app_role)


class TestPostgresTenantsUnderRowSecurity(TenantCompliance):
    @pytest.fixture(autouse=True)
    def _database(self, app_dsn: str, postgres_schema: str) -> None:
        self.dsn, self.schema = app_dsn, postgres_schema  # a fresh schema for every check

    async def make_store(self) -> EventStore:
        store = PostgresStore(self.dsn, schema=self.schema, max_size=4)
        await store.open()
        return store


@pytest.fixture
async def app_store(app_dsn: str, postgres_schema: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(app_dsn, schema=postgres_schema, max_size=4) as store:
        yield store


async def _two_tenants(store: PostgresStore) -> None:
    await store.for_tenant("acme").create(
        "cart", "c-1", make_events("c-1", 0, 2, aggregate_name="cart")
    )
    await store.for_tenant("globex").create(
        "cart", "c-1", make_events("c-1", 0, 1, aggregate_name="cart")
    )
    await store.create("cart", "c-1", make_events("c-1", 0, 3, aggregate_name="cart"))


def _connect(dsn: str, schema: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn


def _tenants_seen(conn: psycopg.Connection[Any], table: str) -> list[str]:
    query = sql.SQL("SELECT DISTINCT tenant FROM {} ORDER BY tenant").format(sql.Identifier(table))
    return [row[0] for row in conn.execute(query).fetchall()]


async def test_a_session_sees_the_rows_of_its_tenant_alone(
    app_store: PostgresStore, app_dsn: str, postgres_schema: str
) -> None:
    await _two_tenants(app_store)
    with _connect(app_dsn, postgres_schema) as conn:
        # No setting: the default tenant, what an application without tenants reads.
        assert _tenants_seen(conn, "eventsignal_events") == [""]
        assert _tenants_seen(conn, "eventsignal_aggregates") == [""]
        conn.execute("SELECT set_config('eventsignal.tenant', 'acme', false)")
        for table in ("eventsignal_events", "eventsignal_aggregates"):
            assert _tenants_seen(conn, table) == ["acme"]
        # A query that forgets the tenant still reads acme's stream alone.
        rows = conn.execute(
            "SELECT version FROM eventsignal_events WHERE aggregate_id = 'c-1' ORDER BY version"
        ).fetchall()
        assert rows == [(1,), (2,)]
        conn.execute("SELECT set_config('eventsignal.tenant', '*', false)")
        assert _tenants_seen(conn, "eventsignal_events") == ["", "acme", "globex"]


async def test_a_session_writes_the_rows_of_its_tenant_alone(
    app_store: PostgresStore, app_dsn: str, postgres_schema: str
) -> None:
    await _two_tenants(app_store)
    with _connect(app_dsn, postgres_schema) as conn:
        conn.execute("SELECT set_config('eventsignal.tenant', 'acme', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO eventsignal_aggregates (tenant, aggregate_name, aggregate_id)"
                " VALUES ('globex', 'cart', 'c-2')"
            )
        changed = conn.execute("UPDATE eventsignal_aggregates SET version = 99").rowcount
        assert changed == 1  # acme's one stream
        conn.execute("SELECT set_config('eventsignal.tenant', '*', false)")
        # The reader of every tenant writes nothing.
        assert conn.execute("DELETE FROM eventsignal_events").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO eventsignal_aggregates (tenant, aggregate_name, aggregate_id)"
                " VALUES ('acme', 'cart', 'c-3')"
            )
    globex = app_store.for_tenant("globex")
    assert [e.version for e in await globex.read_aggregate("cart", "c-1")] == [1]
    assert [i.version for i in await globex.aggregates()] == [1]


async def test_the_store_serves_every_tenant_through_one_pool(app_store: PostgresStore) -> None:
    """Sessions change tenant as the store hands them to one tenant after another."""
    await _two_tenants(app_store)
    acme, globex, every = (app_store.for_tenant(t) for t in ("acme", "globex", None))
    for _ in range(3):  # more uses than the pool has connections, in turns
        assert [e.tenant for e in await acme.read_all()] == ["acme", "acme"]
        assert [e.version for e in await app_store.read_aggregate("cart", "c-1")] == [1, 2, 3]
        assert len(await every.read_all()) == 6
        assert await globex.exists("cart", "c-1")
        assert not await globex.exists("cart", "c-2")
    assert list(await app_store.tenants()) == ["", "acme", "globex"]
    heads = [await view.head_position() for view in (app_store, acme, globex, every)]
    assert heads == [6, 2, 3, 6]


def test_the_application_role_binds_row_security(app_role: str, postgres_database: str) -> None:
    """What the suite above relies on: its role is bound by row-level security."""
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (app_role,)
        ).fetchone()
    assert row == (False, False)


async def test_no_write_names_the_reader_of_every_tenant(app_store: PostgresStore) -> None:
    for name in ("*", "not a tenant"):
        with pytest.raises(InvalidAggregateId):
            await app_store.create("cart", "c-1", tenant=name)
    assert list(await app_store.tenants()) == []
