"""How subjects are named in the store, and how their keys are kept: :class:`Privacy`."""

from __future__ import annotations

import hashlib
import hmac

from eventsignal.codecs.keys import KeyRing
from eventsignal.domain.errors import ConfigurationError

_DOMAIN = b"eventsignal.personal.subject.v1\0"


class Privacy:
    """Settings for personal data; every process writing the same store must share them.

    ``secret`` keys the digest by which the store knows each subject (HMAC-SHA256). Keep it
    outside the store, like a master key: without it, the digests of guessable subject ids
    (sequential numbers, e-mail addresses) could be confirmed by anyone holding the database.
    Without a secret the digest is a domain-separated SHA-256 of the id: still not the id, but
    only as hard to reverse as the id is to guess.

    ``master`` wraps each subject's data key (AES-256-GCM) before it is stored, so the key
    table alone decrypts nothing; readers need the same ring.

    ``key_ttl`` (seconds) is how long a process trusts a data key it loaded: a subject forgotten
    by another process stays readable here for at most that long.
    """

    __slots__ = ("key_ttl", "master", "secret")

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        master: KeyRing | None = None,
        key_ttl: float = 60.0,
    ) -> None:
        if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
            raise ConfigurationError("Privacy(secret=...) must be at least 16 bytes")
        if key_ttl < 0:
            raise ConfigurationError("Privacy(key_ttl=...) must be zero or more seconds")
        self.secret = secret
        self.master = master
        self.key_ttl = key_ttl

    def digest(self, subject: object, tenant: str = "") -> str:
        """The one-way digest the store knows ``subject`` by (hex); a tenant's subject is
        another subject than the same id in another tenant, with a key of its own."""
        text = str(subject).encode()
        if tenant:  # 0xFF never occurs in UTF-8: no default-tenant subject reads like this
            text = b"\xfftenant\xff" + tenant.encode() + b"\xff" + text
        if self.secret is not None:
            return hmac.new(self.secret, text, hashlib.sha256).hexdigest()
        return hashlib.sha256(_DOMAIN + text).hexdigest()

    def __repr__(self) -> str:  # never the secret nor the keys
        keyed = "HMAC" if self.secret is not None else "SHA-256"
        return f"Privacy(digest={keyed}, master={self.master!r}, key_ttl={self.key_ttl:g})"


DEFAULT = Privacy()
