"""Named encryption keys, one of them current: old payloads stay readable after a rotation."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

import msgspec

from eventsignal.domain.errors import ConfigurationError

KEY_BYTES = 32  # AES-256
_KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def generate_key() -> bytes:
    """A fresh random 256-bit key (keep it in a secret store, never beside the data)."""
    return os.urandom(KEY_BYTES)


class _RingSpec(msgspec.Struct, forbid_unknown_fields=True):
    current: str
    keys: dict[str, str]


class KeyRing:
    """Keys by id; new payloads use :attr:`current`, any payload names the key it needs.

    Rotating is :meth:`add` with ``current=True``: payloads written before keep decoding under
    their own key for as long as it stays in the ring.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        self._keys: dict[str, bytes] = {}
        for key_id, key in keys.items():
            self._check(key_id, key)
            self._keys[key_id] = key
        if current not in self._keys:
            raise ConfigurationError(f"the current key {current!r} is not in the key ring")
        self._current = current

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "the key ring") -> KeyRing:
        """A ring from JSON: ``{"current": ID, "keys": {ID: base64 key, ...}}``.

        This is how tools take a ring without a key on their command line (a file or an
        environment variable holds it); errors name ``source`` and key ids, never a key.
        """
        try:
            spec = msgspec.json.decode(text, type=_RingSpec)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ConfigurationError(
                f"{source} must be JSON like "
                '{"current": "key-2", "keys": {"key-1": "<base64>", "key-2": "<base64>"}}: '
                f"{exc}"
            ) from None
        keys: dict[str, bytes] = {}
        for key_id, encoded in spec.keys.items():
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigurationError(f"{source}: key {key_id!r} is not valid base64") from None
        return cls(keys, spec.current)

    def to_json(self) -> bytes:
        """The ring as :meth:`from_json` reads it (keys included: keep it secret)."""
        keys = {k: base64.b64encode(v).decode() for k, v in self._keys.items()}
        return msgspec.json.encode({"current": self._current, "keys": keys})

    @property
    def current(self) -> str:
        """The id of the key new payloads are written with."""
        return self._current

    def add(self, key_id: str, key: bytes, *, current: bool = True) -> None:
        """Add a key (and by default write with it from now on)."""
        self._check(key_id, key)
        known = self._keys.get(key_id)
        if known is not None and known != key:
            raise ConfigurationError(f"key id {key_id!r} is already in the ring, with another key")
        self._keys[key_id] = key
        if current:
            self._current = key_id

    def key(self, key_id: str) -> bytes | None:
        """The key with this id, or ``None``."""
        return self._keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def ids(self) -> list[str]:
        """Every key id in the ring, oldest first."""
        return list(self._keys)

    @staticmethod
    def _check(key_id: str, key: bytes) -> None:
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise ConfigurationError(
                f"key id {key_id!r} must be 1 to 64 letters, digits or ._:- characters"
            )
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigurationError(f"key {key_id!r} must be {KEY_BYTES} bytes (AES-256)")

    def __repr__(self) -> str:  # never the keys themselves
        return f"KeyRing(ids={self.ids()!r}, current={self._current!r})"
