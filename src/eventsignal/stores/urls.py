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
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from eventsignal.domain.errors import SignalError
from eventsignal.stores.base import EventStore
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


def redact(url: str) -> str:
    """The URL or DSN without its credentials, for logs, messages and reprs.

    Masks a URL's password (``user:***@``), a NATS token given as the user (``nats://***@host``),
    the secret query parameters of a URL (``?password=``, ``?token=``, ``?nkey=``...) and the
    secret keywords of a libpq DSN (``password=***``), in each server of a comma-separated list.
    Anything that merely looks like a credential is masked too: a message loses a detail, never
    leaks a password.
    """
    url = _KEYWORD.sub(lambda m: m.group("key") + "***", url)
    url = _USERINFO.sub(_masked_userinfo, url)
    return _PARAMETER.sub(lambda m: m.group("key") + "***", url)


def scrub(text: str, *urls: str) -> str:
    """``text`` with every credential of ``urls`` masked, wherever a driver's message put it."""
    for url in filter(None, urls):
        text = text.replace(url, redact(url))
        for secret in sorted(_secrets(url), key=len, reverse=True):
            text = text.replace(secret, "***")
    return text


_SECRET_NAME = r"[\w-]*(?:pass|pwd|token|secret|key|seed|jwt|cred|auth)[\w-]*"
# A libpq keyword at the start or after a space; its value quoted (with \' escapes) or bare.
_KEYWORD = re.compile(
    rf"(?:^|(?<=\s))(?P<key>{_SECRET_NAME}\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)+)",
    re.IGNORECASE,
)
# Everything between "scheme://" and the last "@" before the path: a password may hold any
# character but "/" (which ends the authority for every driver), "@" included.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/]*)@")
_PARAMETER = re.compile(rf"(?<=[?&;])(?P<key>{_SECRET_NAME}=)(?P<secret>[^&#]+)", re.IGNORECASE)
# Schemes whose user part alone is a secret: NATS reads nats://token@host as a token.
_TOKEN_SCHEMES = {"nats", "tls", "ws", "wss"}


def _masked_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group("scheme"), match.group("userinfo")
    tokens = scheme.lower() in _TOKEN_SCHEMES
    if tokens and "," in userinfo:
        # nats://tok1@h1,tok2@h2: the servers before the last one keep their hosts. A part with
        # no "@" may be a host or a piece of a password holding a comma, so it is masked.
        *servers, last = userinfo.split(",")
        kept = [f"***@{s.rpartition('@')[2]}" if "@" in s else "***" for s in servers]
        return f"{scheme}://{','.join([*kept, _masked(last, tokens)])}@"
    return f"{scheme}://{_masked(userinfo, tokens)}@"


def _masked(userinfo: str, tokens: bool) -> str:
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{user}:***"
    return "***" if tokens else userinfo


def _secrets(url: str) -> set[str]:
    """The credentials :func:`redact` masks, as written and percent-decoded."""
    found = {m.group("secret") for m in _KEYWORD.finditer(url)}
    found |= {m.group("secret") for m in _PARAMETER.finditer(url)}
    for match in _USERINFO.finditer(url):
        userinfo = match.group("userinfo")
        tokens = match.group("scheme").lower() in _TOKEN_SCHEMES
        parts = userinfo.split(",") if tokens else []
        for i, part in enumerate([userinfo, *parts]):
            # In a list, a server before the last one ends with its host: drop it.
            credential = part.rpartition("@")[0] if 0 < i < len(parts) and "@" in part else part
            user, colon, password = credential.partition(":")
            found.add(password if colon else user if tokens else "")
    found |= {unquote(s) for s in found} | {s.strip("'") for s in found}
    return {s for s in found if s}


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
    unknown = set(options) - {"stream", "replicas"}
    if unknown:
        raise InvalidStoreURL(
            url, f"unknown NATS option {sorted(unknown)[0]!r}: use stream=, replicas="
        )
    stream = options.get("stream", "eventsignal")
    replicas = options.get("replicas", "1")
    if not replicas.isdigit() or int(replicas) < 1:
        raise InvalidStoreURL(url, f"replicas must be a positive whole number, not {replicas!r}")
    # Several servers as the NATS tools write them: nats://a:4222,nats://b:4222
    servers = [server.strip() for server in parts._replace(query="").geturl().split(",")]
    try:
        return NatsStore(servers, stream=stream, replicas=int(replicas))
    except ValueError as exc:
        raise InvalidStoreURL(url, str(exc)) from exc


__all__ = ["InvalidStoreURL", "open_store", "redact", "scrub", "sqlite_path"]
