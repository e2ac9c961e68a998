"""The data keys this process holds, per store: loaded once, trusted for a while, dropped on
forgetting."""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from eventsignal.codecs.keys import KEY_BYTES
from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.base import EventStore
from eventsignal.stores.sql import SQLStore
from eventsignal.stores.subject_keys import SubjectKeyStore, SubjectUse

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from eventsignal.privacy.settings import Privacy

_ATTRIBUTE = "_eventsignal_keychain"
UNKNOWN = "unknown"  # a digest the store has no row for
FORGOTTEN = "forgotten"
KEPT = 100_000  # entries past which old ones are swept
SWEEP_AGE = 600.0  # seconds since loading after which a swept entry goes


def subject_key_store_for(store: EventStore) -> SubjectKeyStore:
    """The subject key store that lives in ``store``; an error for a store that has none.

    A tenant's view keeps its subjects' keys in the store's one key table: their digests
    already name the tenant (:func:`tenant_of`).
    """
    store = getattr(store, "tenant_root", store)
    if isinstance(store, SubjectKeyStore):
        return store
    if isinstance(store, SQLStore):
        from eventsignal.stores.sql.subject_keys import SQLSubjectKeyStore

        return SQLSubjectKeyStore(store)
    raise ConfigurationError(
        f"{type(store).__name__} keeps no subject keys: personal fields "
        "(eventsignal.privacy.Personal) need a store that keeps their keys"
    )


def tenant_of(store: object) -> str:
    """The tenant whose subjects a store (or a tenant's view of one) names; writing or
    forgetting through the view of every tenant is refused, as it would name none."""
    if getattr(store, "tenant_root", None) is None:
        return ""
    tenant: str | None = getattr(store, "tenant", None)
    if tenant is None:
        raise ConfigurationError(
            "the view of every tenant names no tenant's subjects: use store.for_tenant(name)"
        )
    return tenant


def keychain_for(store: EventStore) -> Keychain:
    """The keychain of ``store`` in this process, shared by every Signal and runner using it."""
    store = getattr(store, "tenant_root", store)
    chain: Keychain | None = getattr(store, _ATTRIBUTE, None)
    if chain is None:
        chain = Keychain(subject_key_store_for(store))
        setattr(store, _ATTRIBUTE, chain)
    return chain


def _wrap_context(digest: str) -> bytes:
    return b"eventsignal.subject-key\0" + digest.encode()


class Keychain:
    """Unwrapped data keys by subject digest, each with the moment it was loaded.

    An entry is a cipher, :data:`FORGOTTEN` or :data:`UNKNOWN`. Forgotten subjects stay so;
    keys (and unknown digests) are loaded again once older than the reader's ``key_ttl``.
    """

    def __init__(self, keys: SubjectKeyStore) -> None:
        self.keys = keys
        self.entries: dict[str, tuple[Any, float]] = {}
        self.recorded: set[SubjectUse] = set()  # uses this process stored already
        self._swept = time.monotonic()

    def _sweep(self, now: float) -> None:
        """Bound the memory held for many subjects: past :data:`KEPT` entries, those loaded
        long ago go (a read in progress unlocked its keys far more recently than that), and
        the uses are recorded again when next met (an idempotent write)."""
        if len(self.recorded) > KEPT:
            self.recorded.clear()
        if len(self.entries) > KEPT and now - self._swept > 60:
            self._swept = now
            old = now - SWEEP_AGE
            self.entries = {d: e for d, e in self.entries.items() if e[1] >= old}

    def stale(self, digests: Iterable[str], ttl: float) -> set[str]:
        """Those of ``digests`` to load: never loaded, or loaded more than ``ttl`` ago."""
        entries = self.entries
        now = time.monotonic()
        wanted = set()
        for digest in digests:
            entry = entries.get(digest)
            if entry is None or (entry[0] is not FORGOTTEN and now - entry[1] > ttl):
                wanted.add(digest)
        return wanted

    async def load(self, digests: Collection[str], privacy: Privacy) -> None:
        found = await self.keys.load_subject_keys(digests)
        now = time.monotonic()
        self._sweep(now)
        for digest in digests:
            self._keep(digest, found.get(digest, UNKNOWN), privacy, now)

    async def ensure(
        self, digests: Collection[str], uses: Collection[SubjectUse], privacy: Privacy
    ) -> None:
        """Give each subject a key unless it has one (or was forgotten), and record the uses."""
        fresh = {digest: _wrap(os.urandom(KEY_BYTES), digest, privacy) for digest in digests}
        stored = await self.keys.add_subject_keys(fresh, uses)
        now = time.monotonic()
        self._sweep(now)
        for digest, key in stored.items():
            self._keep(digest, key, privacy, now)
        self.recorded.update(uses)

    def forget(self, digest: str) -> None:
        self.entries[digest] = (FORGOTTEN, time.monotonic())

    def drop(self, digest: str) -> None:
        """Load this digest's key again when next needed (it was deleted, or replaced)."""
        self.entries.pop(digest, None)

    def _keep(self, digest: str, key: bytes | str | None, privacy: Privacy, now: float) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if key is None:
            self.entries[digest] = (FORGOTTEN, now)
        elif isinstance(key, str):
            self.entries[digest] = (UNKNOWN, now)
        else:
            self.entries[digest] = (AESGCM(_unwrap(key, digest, privacy)), now)

    def cipher(self, digest: str) -> AESGCM | str | None:
        """The cipher of a loaded subject, :data:`FORGOTTEN`, :data:`UNKNOWN`, or ``None`` if
        this process never loaded it."""
        entry = self.entries.get(digest)
        return None if entry is None else entry[0]


def _wrap(key: bytes, digest: str, privacy: Privacy) -> bytes:
    if privacy.master is None:
        return key
    from eventsignal.codecs.aes import AesGcm

    return AesGcm(privacy.master).encode(key, _wrap_context(digest))


def _unwrap(stored: bytes, digest: str, privacy: Privacy) -> bytes:
    if len(stored) == KEY_BYTES:
        return stored
    if privacy.master is None:
        raise ConfigurationError(
            f"the data key of subject {digest[:12]}... is wrapped by a master key: "
            "read with Privacy(master=...) (e.g. the Signal's own serializer)"
        )
    from eventsignal.codecs.aes import AesGcm

    return AesGcm(privacy.master).decode(stored, _wrap_context(digest))
