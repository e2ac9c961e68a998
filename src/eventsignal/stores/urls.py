"""Choosing an event store from a URL, as the command line and the cart app are configured.

==========================================  ============================================
``data/cart.db``, ``sqlite:///data/x.db``   :class:`SQLiteStore` on a relative path
``/var/x.db``, ``sqlite:////var/x.db``      :class:`SQLiteStore` on an absolute path
``postgresql://user@host/db``               :class:`PostgresStore` (``postgres://`` too)
``host=h dbname=db``                        :class:`PostgresStore`, libpq keyword form
``nats://host:4222[?stream=S&replicas=3]``  :class:`NatsStore`
``nats://h1:4222,nats://h2:4222``           :class:`NatsStore` on a cluster's servers
``memory:``                                 :class:`MemoryStore` (this process only)
==========================================  ============================================

A NATS URL may also say ``durability=require|warn|ignore``, ``monitor=`` (the servers'
monitoring URLs, comma-separated) and ``layout=event-per-message|command-per-message`` (for a
stream it creates), as :class:`NatsStore` takes them.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from eventsignal.domain.errors import SignalError
from eventsignal.stores.base import EventStore
from eventsignal.stores.credentials import redact, scrub
from eventsignal.stores.memory import MemoryStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_KEYWORD_DSN = re.compile(r"^\w+\s*=")  # libpq's "host=... dbname=..." form
_KNOWN = "a path, sqlite:///path, postgresql://..., nats://... or memory:"


class InvalidStoreURL(SignalError, ValueError):
    """A store URL names no store this library knows, or lacks what that store needs."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid store URL {redact(url)!r}: {reason}")
        self.url = url
        self.reason = reason


def open_store(url: str, *, migrate: bool = True) -> EventStore:
    """The store a URL names, unopened: ``Signal`` (or ``await store.open()``) opens it.

    With ``migrate`` (the default) a SQL store creates or upgrades its schema when opened. A
    SQLite file's folder is created if missing, so a fresh checkout runs with no setup.
    """
    url = url.strip()
    if not url:
        raise InvalidStoreURL(url, f"it is empty; expected {_KNOWN}")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if len(scheme) == 1:  # a Windows drive letter, as in C:\data\cart.db
        scheme = ""
    if scheme == "memory":
        if url.lower() not in ("memory:", "memory://"):
            raise InvalidStoreURL(url, "a memory store takes no location: write 'memory:'")
        return MemoryStore()
    if scheme in ("postgresql", "postgres") or (not scheme and _KEYWORD_DSN.match(url)):
        return _postgres(url, migrate)
    if scheme == "nats":
        if not urlsplit(url).hostname:
            raise InvalidStoreURL(url, "a NATS URL needs a host: nats://host:4222")
        return _nats(url)
    if scheme == "sqlite":
        return _sqlite(_sqlite_path(url), migrate)
    if scheme:
        raise InvalidStoreURL(url, f"unknown scheme {scheme!r}; expected {_KNOWN}")
    return _sqlite(url, migrate)


async def create_database(url: str) -> bool:
    """Create the database a PostgreSQL URL names unless it exists (``True``: created). A SQLite
    file is made when first opened, and other stores have no database to create."""
    url = url.strip()
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("postgresql", "postgres") or (not scheme and _KEYWORD_DSN.match(url)):
        try:
            from eventsignal.stores.postgres import create_database as create_postgres
        except ImportError as exc:
            raise InvalidStoreURL(
                url, f"PostgreSQL needs 'pip install eventsignal[postgres]' ({exc})"
            ) from exc
        return await create_postgres(url)
    return False


def sqlite_path(url: str) -> str | None:
    """The file a URL names if it is a SQLite store, else ``None``."""
    url = url.strip()
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "sqlite":
        return _sqlite_path(url)
    if (not scheme or len(scheme) == 1) and url and not _KEYWORD_DSN.match(url):
        return url
    return None


def _sqlite_path(url: str) -> str:
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy reads them.
    if not url.lower().startswith("sqlite:///"):
        raise InvalidStoreURL(url, "write sqlite:///relative/path or sqlite:////absolute/path")
    path = url[len("sqlite:///") :]
    if not path:
        raise InvalidStoreURL(url, "the SQLite URL names no file")
    return path


def _sqlite(path: str, migrate: bool) -> EventStore:
    try:
        from eventsignal.stores.sqlite import SQLiteStore
    except ImportError as exc:  # pragma: no cover - the SQLite store ships with the core
        raise InvalidStoreURL(path, f"the SQLite store is not available ({exc})") from exc
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(path, migrate=migrate)


def _postgres(url: str, migrate: bool) -> EventStore:
    try:
        from eventsignal.stores.postgres import PostgresStore
    except ImportError as exc:
        raise InvalidStoreURL(
            url, f"PostgreSQL needs 'pip install eventsignal[postgres]' ({exc})"
        ) from exc
    return PostgresStore(url, migrate=migrate)


def _nats(url: str) -> EventStore:
    try:
        from eventsignal.stores.nats import NatsStore
    except ImportError as exc:
        raise InvalidStoreURL(url, f"NATS needs 'pip install eventsignal[nats]' ({exc})") from exc
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    unknown = set(options) - {"stream", "replicas", "durability", "monitor", "layout"}
    if unknown:
        raise InvalidStoreURL(
            url,
            f"unknown NATS option {sorted(unknown)[0]!r}: "
            "use stream=, replicas=, durability=, monitor=, layout=",
        )
    stream = options.get("stream", "eventsignal")
    replicas = options.get("replicas", "1")
    if not replicas.isdigit() or int(replicas) < 1:
        raise InvalidStoreURL(url, f"replicas must be a positive whole number, not {replicas!r}")
    # Several servers as the NATS tools write them: nats://a:4222,nats://b:4222
    servers = [server.strip() for server in parts._replace(query="").geturl().split(",")]
    try:
        return NatsStore(
            servers,
            stream=stream,
            replicas=int(replicas),
            durability=options.get("durability", "warn"),  # type: ignore[arg-type]  # checked
            monitor=[m for m in options.get("monitor", "").split(",") if m],
            layout=options.get("layout"),  # type: ignore[arg-type]  # checked
        )
    except ValueError as exc:
        raise InvalidStoreURL(url, str(exc)) from exc


__all__ = ["InvalidStoreURL", "create_database", "open_store", "redact", "scrub", "sqlite_path"]
