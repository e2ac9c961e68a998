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
        self._opened: tuple[JetStreamContext, KeyValue] | None = None

    async def save(self, js: JetStreamContext, snapshot: Snapshot) -> None:
        """Store ``snapshot`` unless the bucket already holds one as new or newer."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        key = key_of(validate_name(snapshot.aggregate_name), validate_id(snapshot.aggregate_id))
        value = _encode(snapshot)
        kv = await self._bucket(js)
        wait = self._patience(js)
        while True:
            try:
                entry = await patiently(partial(kv.get, key), wait)
            except KeyNotFoundError:
                entry = None
            except Exception as exc:
                raise self._unavailable(exc) from exc
            try:
                if entry is None:
                    await patiently(partial(kv.create, key, value), wait)
                elif entry.value and _decode(entry.value).version >= snapshot.version:
                    return
                else:
                    await patiently(partial(kv.update, key, value, last=entry.revision), wait)
                return
            except KeyWrongLastSequenceError:
                continue  # another save came between: compare with that one
            except Exception as exc:
                raise self._unavailable(exc) from exc

    async def load(
        self, js: JetStreamContext, aggregate_name: str, aggregate_id: str
    ) -> Snapshot | None:
        from nats.js.errors import KeyNotFoundError

        kv = await self._bucket(js)
        try:
            entry = await patiently(
                partial(kv.get, key_of(aggregate_name, aggregate_id)), self._patience(js)
            )
        except KeyNotFoundError:
            return None
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return _decode(entry.value) if entry.value else None

    async def delete(self, js: JetStreamContext, aggregate_name: str, aggregate_id: str) -> None:
        """Remove the aggregate's snapshot, history and all."""
        kv = await self._bucket(js)
        try:
            await patiently(
                partial(kv.purge, key_of(aggregate_name, aggregate_id)), self._patience(js)
            )
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        """The bucket on this connection, created (with the stream's replicas) if missing."""
        from nats.js.api import StorageType
        from nats.js.errors import BucketNotFoundError

        if self._opened is not None and self._opened[0] is js:
            return self._opened[1]
        try:
            try:
                kv = await js.key_value(self.name)
            except BucketNotFoundError:
                kv = await js.create_key_value(
                    bucket=self.name, history=1, replicas=self.replicas, storage=StorageType.FILE
                )
        except Exception as exc:
            raise self._unavailable(exc) from exc
        self._opened = (js, kv)
        return kv

    def _patience(self, js: JetStreamContext) -> float:
        """How long to ask again while nobody serves the bucket (one not yet known on every
        server of a cluster, or still being recovered by a server just restarted)."""
        return float(js._timeout)

    def _unavailable(self, exc: Any) -> StoreUnavailable:
        return StoreUnavailable(f"snapshot bucket {self.name!r}: {type(exc).__name__}: {exc}")


__all__ = ["SnapshotBucket", "key_of"]
