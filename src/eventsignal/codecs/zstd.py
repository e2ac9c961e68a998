"""zstd compression of stored payloads; small ones are kept as they are.

A zstd frame starts with its magic number, which no JSON document does, so payloads written
before compression was turned on (or too small to gain from it) read back unchanged.
"""

from __future__ import annotations

import zstandard

MAGIC = b"\x28\xb5\x2f\xfd"


class Zstd:
    """Compresses payloads of at least ``min_size`` bytes at ``level``."""

    binds_context = False

    def __init__(self, level: int = 3, *, min_size: int = 64) -> None:
        self.level = level
        self.min_size = min_size
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, data: bytes, context: bytes = b"") -> bytes:
        """Compress, unless the payload is small or would not shrink."""
        if len(data) < self.min_size:
            return data
        packed = self._compressor.compress(data)
        return packed if len(packed) < len(data) else data

    def decode(self, data: bytes, context: bytes = b"") -> bytes:
        """Decompress a zstd frame; anything else is returned as it is."""
        if data[:4] != MAGIC:
            return data
        return self._decompressor.decompress(data)
