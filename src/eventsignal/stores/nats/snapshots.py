"""Snapshots of a NatsStore's aggregates, in a JetStream key-value bucket beside its stream.

The bucket is ``<stream>_snapshots``, one key per aggregate, keeping only the latest value. The
key is the aggregate's name and id as the stream's subject tokens spell them, except that an
encoded token starts with ``=`` rather than ``~``, which keys may not hold.

Snapshots are taken in the background and may finish out of order, so a save is a
compare-and-set on the key's revision: it reads the stored snapshot, gives up if that one is as
new or newer, and otherwise writes only if nothing was written since it read, trying again if
something was.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from eventsignal.domain.errors import StoreUnavailable
from eventsignal.domain.identity import validate_id, validate_name
from eventsignal.stores.base import Snapshot
from eventsignal.stores.nats.buckets import BucketReads
from eventsignal.stores.nats.requests import patiently
from eventsignal.stores.nats.wire import encode_token

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Snapshot).decode


def key_of(aggregate_name: str, aggregate_id: str) -> str:
    """The bucket's key for one aggregate: valid for any name and id, and one per aggregate."""
    tokens = (encode_token(aggregate_name), encode_token(aggregate_id))
    return ".".join("=" + token[1:] if token.startswith("~") else token for token in tokens)


class SnapshotBucket:
    """The key-value bucket of one stream's snapshots, created on first use."""

    def __init__(self, stream: str, replicas: int) -> None:
        self.name = f"{stream}_snapshots"
        self.replicas = replicas
        self._opened: tuple[JetStreamContext, KeyValue, BucketReads] | None = None

    async def save(self, js: JetStreamContext, snapshot: Snapshot) -> None:
        """Store ``snapshot`` unless the bucket already holds one as new or newer."""
        from nats.js.errors import KeyWrongLastSequenceError

        key = key_of(validate_name(snapshot.aggregate_name), validate_id(snapshot.aggregate_id))
        value = _encode(snapshot)
        kv, reads = await self._bucket(js)
        while True:
            revision, stored = await reads.latest(key)
            if stored and _decode(stored).version >= snapshot.version:
                return
            try:
                # Revision 0 (no such key) creates it; a deleted key's marker is built on.
                await patiently(partial(kv.update, key, value, last=revision), reads.patience)
                return
            except KeyWrongLastSequenceError:
                continue  # another save came between: compare with that one
            except Exception as exc:
                raise self._unavailable(exc) from exc

    async def load(
        self, js: JetStreamContext, aggregate_name: str, aggregate_id: str
    ) -> Snapshot | None:
        _, reads = await self._bucket(js)
        _, stored = await reads.latest(key_of(aggregate_name, aggregate_id))
        return _decode(stored) if stored else None

    async def delete(self, js: JetStreamContext, aggregate_name: str, aggregate_id: str) -> None:
        """Remove the aggregate's snapshot, history and all."""
        kv, reads = await self._bucket(js)
        try:
            await patiently(partial(kv.purge, key_of(aggregate_name, aggregate_id)), reads.patience)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def _bucket(self, js: JetStreamContext) -> tuple[KeyValue, BucketReads]:
        """The bucket on this connection, created (with the stream's replicas) if missing, and
        its reads (through the leader when replicated, since a replica may lag)."""
        from nats.js.api import StorageType
        from nats.js.errors import BucketNotFoundError

        if self._opened is not None and self._opened[0] is js:
            return self._opened[1:]
        try:
            try:
                kv = await js.key_value(self.name)
            except BucketNotFoundError:
                kv = await js.create_key_value(
                    bucket=self.name, history=1, replicas=self.replicas, storage=StorageType.FILE
                )
        except Exception as exc:
            raise self._unavailable(exc) from exc
        reads = BucketReads(kv, replicated=self.replicas > 1)
        self._opened = (js, kv, reads)
        return kv, reads

    def _unavailable(self, exc: Any) -> StoreUnavailable:
        return StoreUnavailable(f"snapshot bucket {self.name!r}: {type(exc).__name__}: {exc}")


__all__ = ["SnapshotBucket", "key_of"]
