"""One codec per tenant: each tenant's payloads under keys of its own.

``PerTenant(lambda tenant: AesGcm(ring_of(tenant)))`` asks the function once per tenant (the
default tenant is ``""``) and keeps the codecs it made. A Signal's serializer picks the codec
of each row's tenant, and binding codecs are given the row's identity with its tenant, so a
payload can be read neither under another tenant's keys nor in another tenant's stream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from eventsignal.domain.errors import ConfigurationError


class PerTenant:
    """A transcoder that is a family of codecs, one per tenant, made on first use.

    At most ``keep`` codecs are kept (the least recently used go first, to be made again when
    needed), so ten thousand tenants do not mean ten thousand live ciphers. Encoding without a
    tenant (snapshots, which a tenant's view stores beside its events) uses the default
    tenant's codec.
    """

    def __init__(self, codec_of: Callable[[str], Any], *, keep: int = 1024) -> None:
        if keep < 1:
            raise ConfigurationError("PerTenant(keep=...) must be at least 1")
        self._codec_of = codec_of
        self._keep = keep
        self._codecs: OrderedDict[str, Any] = OrderedDict()
        self._default = self.for_tenant("")
        # Every tenant's codec must bind as the default one does: the serializer asks once.
        self.binds_context = bool(getattr(self._default, "binds_context", False))

    def for_tenant(self, tenant: str) -> Any:
        """The codec of ``tenant`` (``""``: the default tenant)."""
        codecs = self._codecs
        codec = codecs.get(tenant)
        if codec is None:
            codec = self._codec_of(tenant)
            if codecs and bool(getattr(codec, "binds_context", False)) != self.binds_context:
                raise ConfigurationError(
                    f"the codec of tenant {tenant!r} binds rows differently from the default "
                    "tenant's: every tenant needs the same kind of codec"
                )
            codecs[tenant] = codec
            if len(codecs) > self._keep:
                codecs.popitem(last=False)
        else:
            codecs.move_to_end(tenant)
        return codec

    def encode(self, data: bytes, context: bytes = b"") -> bytes:
        """Encode with the default tenant's codec."""
        codec = self._default
        return codec.encode(data, context) if self.binds_context else codec.encode(data)  # type: ignore[no-any-return]

    def decode(self, data: bytes, context: bytes = b"") -> bytes:
        """Decode with the default tenant's codec."""
        codec = self._default
        return codec.decode(data, context) if self.binds_context else codec.decode(data)  # type: ignore[no-any-return]
