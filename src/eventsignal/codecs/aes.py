"""AES-256-GCM encryption of stored payloads, the key's id written beside each one.

Layout: ``0x01 | len(key id) | key id | 12-byte nonce | ciphertext and 16-byte tag``. The nonce
is random per payload (2**32 payloads per key keep the collision risk negligible; rotate well
before). The associated data is the row's identity when the serializer gives it, so a payload
copied onto another row fails authentication.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventsignal.codecs.keys import KeyRing

FORMAT = 1
NONCE_BYTES = 12


class DecryptionFailed(ValueError):
    """A payload that is not what this codec wrote, or not under any key it holds."""


class AesGcm:
    """Encrypts with the key ring's current key; decrypts with the key each payload names.

    ``read_plaintext=True`` lets rows written before encryption was turned on be read as they
    are (JSON never starts with the format byte); by default such a row is an error.
    """

    binds_context = True

    def __init__(self, keys: KeyRing, *, read_plaintext: bool = False) -> None:
        self.keys = keys
        self.read_plaintext = read_plaintext
        self._ciphers: dict[str, tuple[bytes, AESGCM]] = {}

    def _cipher(self, key_id: str) -> AESGCM:
        key = self.keys.key(key_id)
        if key is None:
            raise DecryptionFailed(f"encrypted under key {key_id!r}, which the key ring lacks")
        cached = self._ciphers.get(key_id)
        if cached is None or cached[0] != key:
            cached = (key, AESGCM(key))
            self._ciphers[key_id] = cached
        return cached[1]

    def encode(self, data: bytes, context: bytes = b"") -> bytes:
        """Encrypt under the current key, bound to ``context``."""
        key_id = self.keys.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(key_id).encrypt(nonce, data, context)
        name = key_id.encode()
        return bytes((FORMAT, len(name))) + name + nonce + sealed

    def decode(self, data: bytes, context: bytes = b"") -> bytes:
        """Decrypt under the key the payload names; :class:`DecryptionFailed` if it cannot."""
        if not data or data[0] != FORMAT:
            if self.read_plaintext:
                return data
            raise DecryptionFailed("not encrypted (written before encryption was turned on?)")
        end = 2 + data[1]
        key_id = data[2:end].decode("ascii", "replace")
        nonce = data[end : end + NONCE_BYTES]
        try:
            return self._cipher(key_id).decrypt(nonce, data[end + NONCE_BYTES :], context)
        except InvalidTag:
            raise DecryptionFailed(
                f"authentication failed under key {key_id!r}: the payload was altered, "
                "belongs to another row, or the key is not the one it was written with"
            ) from None

    @staticmethod
    def key_id_of(data: bytes) -> str | None:
        """The id of the key a payload was written with, or ``None`` if it is not encrypted."""
        if not data or data[0] != FORMAT or len(data) < 2 + data[1]:
            return None
        return data[2 : 2 + data[1]].decode("ascii", "replace")
