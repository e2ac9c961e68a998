"""Snapshots of aggregates whose events hold personal data, sealed so they are not plaintext
at rest.

A snapshot is the state folded from the events, personal values and all. Each aggregate's
snapshots are encrypted (AES-256-GCM, bound to the aggregate) under a key of their own, kept
with the subject keys under the digest of a name no subject can have. Forgetting a subject
deletes that key (unrecorded: it is no subject) for every aggregate whose events named the
subject, as well as the snapshot: bytes of it left in a database's free pages are ciphertext
under a key that is gone. The next snapshot of the aggregate gets a new key.
"""

from __future__ import annotations

import os

from eventsignal.privacy.keychain import keychain_for
from eventsignal.privacy.settings import Privacy
from eventsignal.stores.base import EventStore

FORMAT = b"\x02"
NONCE_BYTES = 12


def snapshot_digest(privacy: Privacy, aggregate_name: str, aggregate_id: str) -> str:
    """The digest under which the key of one aggregate's snapshots is kept."""
    return privacy.digest(f"\0snapshot\0{aggregate_name}\0{aggregate_id}")


class SnapshotSealer:
    """Encrypts and decrypts one aggregate type's snapshots with per-aggregate keys."""

    def __init__(self, aggregate_name: str, store: EventStore, privacy: Privacy) -> None:
        self.aggregate_name = aggregate_name
        self.store = store
        self.privacy = privacy

    def _aad(self, aggregate_id: str) -> bytes:
        return f"snapshot\0{self.aggregate_name}\0{aggregate_id}".encode()

    async def seal(self, aggregate_id: str, data: bytes) -> bytes | None:
        """The sealed snapshot (``None`` if no key can be had for it: then none is taken)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        chain = keychain_for(self.store)
        digest = snapshot_digest(self.privacy, self.aggregate_name, aggregate_id)
        if chain.stale((digest,), self.privacy.key_ttl):
            await chain.ensure((digest,), (), self.privacy)
        cipher = chain.cipher(digest)
        if not isinstance(cipher, AESGCM):
            return None
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT + nonce + cipher.encrypt(nonce, data, self._aad(aggregate_id))

    async def open(self, aggregate_id: str, data: bytes) -> bytes | None:
        """The snapshot's bytes, or ``None`` when its key is gone; a snapshot altered or moved
        to another aggregate raises ``ValueError``."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        chain = keychain_for(self.store)
        digest = snapshot_digest(self.privacy, self.aggregate_name, aggregate_id)
        if chain.stale((digest,), self.privacy.key_ttl):
            await chain.load((digest,), self.privacy)
        cipher = chain.cipher(digest)
        if not isinstance(cipher, AESGCM):
            return None
        if data[:1] != FORMAT:
            raise ValueError("not a sealed snapshot")
        nonce = data[1 : 1 + NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, data[1 + NONCE_BYTES :], self._aad(aggregate_id))
        except InvalidTag:
            raise ValueError("sealed snapshot fails authentication") from None
