"""Keeping credentials out of every message, repr, log line and page.

Store URLs and DSNs carry passwords and tokens in many forms (URL userinfo, query parameters,
libpq keywords, NATS tokens, lists of servers); everything that shows one to a person goes
through :func:`redact`, and text that may quote one (a driver's error) through :func:`scrub`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote


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


def is_secret_name(name: str) -> bool:
    """Whether a field named ``name`` (a metadata key, a setting) may hold a credential."""
    return re.fullmatch(_SECRET_NAME, name, re.IGNORECASE) is not None


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


def describe(exc: BaseException, *urls: str) -> str:
    """One line for an error, with the credentials of ``urls`` masked; the error's type is named
    unless it is one of eventsignal's own (whose messages say everything)."""
    text = scrub(" ".join(str(exc).split()), *urls) or type(exc).__name__
    if type(exc).__module__.startswith("eventsignal") or isinstance(exc, ValueError):
        return text
    return f"{type(exc).__name__}: {text}"


__all__ = ["describe", "is_secret_name", "redact", "scrub"]
