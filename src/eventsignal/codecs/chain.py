"""Codecs applied one after the other on the way in, in reverse on the way out."""

from __future__ import annotations

from typing import Any


class Chain:
    """``Chain(a, b)`` stores ``b(a(data))`` and reads back with ``a⁻¹(b⁻¹(stored))``."""

    def __init__(self, *codecs: Any) -> None:
        self.codecs = codecs
        self.binds_context = any(getattr(c, "binds_context", False) for c in codecs)

    def encode(self, data: bytes, context: bytes = b"") -> bytes:
        """Apply each codec in order."""
        for codec in self.codecs:
            data = codec.encode(data, context) if _binds(codec) else codec.encode(data)
        return data

    def decode(self, data: bytes, context: bytes = b"") -> bytes:
        """Undo each codec, last first."""
        for codec in reversed(self.codecs):
            data = codec.decode(data, context) if _binds(codec) else codec.decode(data)
        return data


def _binds(codec: Any) -> bool:
    return bool(getattr(codec, "binds_context", False))


def chain(*codecs: Any) -> Chain:
    """Compose codecs: ``chain(Zstd(), AesGcm(keys))`` compresses first (encrypted bytes do not
    compress), then encrypts."""
    return Chain(*codecs)
