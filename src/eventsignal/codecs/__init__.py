"""Codecs: what stored event and snapshot bytes pass through on their way to the store and back.

Each is a transcoder (``Signal(transcoder=...)``): :class:`AesGcm` encrypts with AES-256-GCM
under a :class:`KeyRing` (the ``crypto`` extra), :class:`Zstd` compresses (the ``zstd`` extra),
and :func:`chain` composes them, e.g. ``chain(Zstd(), AesGcm(ring))`` compresses, then encrypts;
:class:`PerTenant` gives each tenant codecs (and keys) of its own.
A codec that binds (AES-GCM does) is given the row's identity, so a payload moved to another
aggregate, version or event name fails to decode instead of reading as that row.
"""

from typing import TYPE_CHECKING

from eventsignal.codecs.chain import Chain, chain
from eventsignal.codecs.keys import KeyRing, generate_key
from eventsignal.codecs.tenants import PerTenant

if TYPE_CHECKING:
    from eventsignal.codecs.aes import AesGcm
    from eventsignal.codecs.rotation import Reencryption, key_census, reencrypt
    from eventsignal.codecs.zstd import Zstd

__all__ = [
    "AesGcm",
    "Chain",
    "KeyRing",
    "PerTenant",
    "Reencryption",
    "Zstd",
    "chain",
    "generate_key",
    "key_census",
    "reencrypt",
]


def __getattr__(name: str) -> object:
    # The codecs with a third-party dependency are imported when asked for, so a missing extra
    # fails with its name only where it is used.
    if name == "AesGcm":
        from eventsignal.codecs.aes import AesGcm

        return AesGcm
    if name == "Zstd":
        from eventsignal.codecs.zstd import Zstd

        return Zstd
    if name in ("Reencryption", "key_census", "reencrypt"):
        # Key rotation reads stores: imported when asked for, keeping this package light.
        from eventsignal.codecs import rotation

        return getattr(rotation, name)
    raise AttributeError(name)
