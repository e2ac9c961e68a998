"""The pytest plugin of eventsignal: Signals on each store, ready per test.

Installed with the package (entry point ``pytest11``), so any project that installs eventsignal
has the fixtures; nothing of eventsignal beyond this module is imported until a test uses one.

* ``eventsignal_memory``, ``eventsignal_sqlite`` (a file in the test's temporary directory) and
  ``eventsignal_postgres`` (a fresh schema per test, dropped afterwards) are
  :class:`SignalFactory` objects: ``factory(config, **options)`` makes an unstarted
  :class:`~eventsignal.Signal` (``async with`` it), ``factory.sync(config, **options)`` a started
  :class:`~eventsignal.sync.Signal`, stopped after the test. All Signals a factory makes share
  one store, ``factory.store``, as processes share a database.
* ``eventsignal_store_kind`` runs a test once per backend (``memory``, ``sqlite``, ``postgres``),
  and ``eventsignal_signals`` is the factory of that backend.
* PostgreSQL comes from ``--eventsignal-postgres URL`` or the ``EVENTSIGNAL_POSTGRES``
  environment variable (a libpq URL or connection string of a database the tests may create
  schemas in); without either, or without psycopg, the tests using it are skipped, saying why. A
  project may instead override the ``eventsignal_postgres_url`` fixture.

For given/when/then checks see :mod:`eventsignal.scenarios`; the fixtures' stores serve there
as ``scenario(config, store=eventsignal_sqlite.new_store())``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from eventsignal.application import Signal
    from eventsignal.domain.config import AggregateConfig
    from eventsignal.stores.base import EventStore
    from eventsignal.sync import Signal as SyncSignal

ENV_POSTGRES = "EVENTSIGNAL_POSTGRES"
KINDS = ("memory", "sqlite", "postgres")

__all__ = ["ENV_POSTGRES", "KINDS", "SignalFactory"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eventsignal")
    group.addoption(
        "--eventsignal-postgres",
        metavar="URL",
        default=None,
        help=(
            "PostgreSQL database for the eventsignal_postgres fixture; each test gets a fresh "
            f"schema in it (default: ${ENV_POSTGRES})"
        ),
    )


class SignalFactory:
    """Makes Signals (async or blocking) on one backend's store, and cleans up after the test."""

    def __init__(self, kind: str, make_store: Callable[[], EventStore]) -> None:
        self.kind = kind
        """``memory``, ``sqlite`` or ``postgres``."""
        self._make_store = make_store
        self._store: EventStore | None = None
        self._facades: list[SyncSignal[Any, Any]] = []

    @property
    def store(self) -> EventStore:
        """The test's store on this backend (unopened until a Signal starts on it)."""
        if self._store is None:
            self._store = self._make_store()
        return self._store

    def new_store(self) -> EventStore:
        """Another unopened store on this backend: a new memory store or SQLite file; on
        PostgreSQL, another store on the test's schema."""
        return self._make_store()

    def __call__(self, config: AggregateConfig[Any, Any], **options: Any) -> Signal[Any, Any]:
        """An unstarted :class:`~eventsignal.Signal` on :attr:`store`; ``options`` go to it."""
        from eventsignal.application import Signal

        return Signal(config, store=self.store, **options)

    def sync(self, config: AggregateConfig[Any, Any], **options: Any) -> SyncSignal[Any, Any]:
        """A started :class:`~eventsignal.sync.Signal` on :attr:`store`, stopped after the test."""
        from eventsignal.sync import Signal as SyncSignal

        facade: SyncSignal[Any, Any] = SyncSignal(config, store=self.store, **options)
        facade.start()
        self._facades.append(facade)
        return facade

    def close(self) -> None:
        """Stop the blocking Signals made by :meth:`sync` (done after each test)."""
        for facade in reversed(self._facades):
            facade.stop()

    def __repr__(self) -> str:
        return f"<SignalFactory {self.kind}>"


@pytest.fixture
def eventsignal_memory() -> Iterator[SignalFactory]:
    """Signals on a :class:`~eventsignal.stores.MemoryStore` of the test's own."""
    from eventsignal.stores import MemoryStore

    factory = SignalFactory("memory", MemoryStore)
    yield factory
    factory.close()


@pytest.fixture
def eventsignal_sqlite(tmp_path: Path) -> Iterator[SignalFactory]:
    """Signals on a :class:`~eventsignal.stores.SQLiteStore` in the test's temporary directory."""
    from eventsignal.stores import SQLiteStore

    files = iter(range(1, 1_000_000))

    def make() -> EventStore:
        return SQLiteStore(tmp_path / f"eventsignal-{next(files)}.db", migrate=True)

    factory = SignalFactory("sqlite", make)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def eventsignal_postgres_url(pytestconfig: pytest.Config) -> str | None:
    """The PostgreSQL database the ``eventsignal_postgres`` fixture makes schemas in, if any."""
    configured: str | None = pytestconfig.getoption("eventsignal_postgres")
    return configured or os.environ.get(ENV_POSTGRES) or None


@pytest.fixture
def eventsignal_postgres(eventsignal_postgres_url: str | None) -> Iterator[SignalFactory]:
    """Signals on a :class:`~eventsignal.stores.PostgresStore` in a fresh schema of its own,
    dropped with everything in it after the test."""
    url = eventsignal_postgres_url
    if not url:
        pytest.skip(
            f"no PostgreSQL for eventsignal: pass --eventsignal-postgres URL or set {ENV_POSTGRES}"
        )
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        pytest.skip("eventsignal_postgres needs psycopg: pip install 'eventsignal[postgres]'")
    from eventsignal.stores import PostgresStore

    schema = f"eventsignal_test_{secrets.token_hex(6)}"

    def make() -> EventStore:
        return PostgresStore(url, migrate=True, schema=schema, max_size=4)

    factory = SignalFactory("postgres", make)
    try:
        yield factory
    finally:
        factory.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=KINDS)
def eventsignal_store_kind(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: ``memory``, ``sqlite``, ``postgres``."""
    kind: str = request.param
    return kind


@pytest.fixture
def eventsignal_signals(
    eventsignal_store_kind: str, request: pytest.FixtureRequest
) -> SignalFactory:
    """The :class:`SignalFactory` of the backend ``eventsignal_store_kind`` names."""
    factory: SignalFactory = request.getfixturevalue(f"eventsignal_{eventsignal_store_kind}")
    return factory
