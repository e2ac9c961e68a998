"""Subject keys (see :mod:`eventsignal.stores.subject_keys`) in JetStream key-value buckets.

``<stream>_subject_keys`` holds ``k.<digest>`` (the data key, or a marker once the subject is
forgotten) and ``u.<digest>`` (the aggregates whose events named the subject, a msgpack list
updated by compare-and-set). ``<stream>_forgotten`` holds one key per forgotten subject, its
value the moment, so listing the record never walks every subject. Both keep one revision per
key: the key a forgetting overwrites is no longer in the bucket's history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from eventsignal.domain.errors import SignalError, StoreUnavailable
from eventsignal.stores.nats.buckets import BucketReads
from eventsignal.stores.subject_keys import Forgetting, ForgottenSubject, SubjectUse

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

GONE = b"forgotten"  # never a key: those are 32 bytes, or wrapped ones starting with 0x01
_uses_encode = msgspec.msgpack.Encoder().encode
_uses_decode = msgspec.msgpack.Decoder(list[tuple[str, str]]).decode


class NatsSubjectKeys:
    """The subject key store of a :class:`~eventsignal.stores.nats.NatsStore`."""

    stream: str
    replicas: int
    _subject_buckets: dict[str, tuple[Any, Any]]

    def _jetstream(self) -> JetStreamContext:
        raise NotImplementedError

    async def _subject_bucket(self, suffix: str) -> KeyValue:
        from nats.js.api import StorageType
        from nats.js.errors import BucketNotFoundError

        js = self._jetstream()
        if not hasattr(self, "_subject_buckets"):
            self._subject_buckets = {}
        opened = self._subject_buckets.get(suffix)
        if opened is not None and opened[0] is js:
            return opened[1]  # type: ignore[no-any-return]
        name = f"{self.stream}_{suffix}"
        try:
            try:
                kv = await js.key_value(name)
            except BucketNotFoundError:
                kv = await js.create_key_value(
                    bucket=name, history=1, replicas=self.replicas, storage=StorageType.FILE
                )
        except Exception as exc:
            raise _unavailable(name, exc) from exc
        self._subject_buckets[suffix] = (js, kv)
        return kv

    async def prepare_subject_keys(self) -> None:
        await self._subject_bucket("subject_keys")
        await self._subject_bucket("forgotten")

    def _reads(self, kv: KeyValue) -> BucketReads:
        """Reads of ``kv`` asked again during a leader change (made per read: cheap, and
        never on the command path of a subject whose key is cached)."""
        return BucketReads(kv, replicated=self.replicas > 1)

    async def _create_key(self, kv: KeyValue, key: str, value: bytes) -> None:
        """Write ``key`` unless it holds a value: the first value written stays (another
        writer's key, a forgotten subject's marker, the first moment of a forgetting)."""
        from nats.js.errors import KeyWrongLastSequenceError

        reads = self._reads(kv)
        reads.check(key)
        revision = 0  # no such key, as usual
        deadline = asyncio.get_running_loop().time() + reads.patience
        try:
            # Again only while the key is deleted between each read and write, or a replica
            # behind answers the read: both pass, and the timeout bounds the wait.
            while asyncio.get_running_loop().time() < deadline:
                try:
                    await kv.update(key, value, last=revision)
                    return
                except KeyWrongLastSequenceError:
                    revision, held = await reads.latest(key)
                    if held is not None:
                        return
                    # Deleted or purged: written over its marker's revision.
        except SignalError:
            raise  # said already
        except Exception as exc:
            raise _unavailable(kv._name, exc) from exc
        raise StoreUnavailable(
            f"subject key bucket {kv._name!r}: {key!r} changed at every try for {reads.patience}s"
        )

    async def _kv_get(self, kv: KeyValue, key: str) -> bytes | None:
        """``key``'s value, ``None`` if it holds none."""
        return (await self._reads(kv).latest(key)).value

    async def load_subject_keys(self, digests: Collection[str]) -> dict[str, bytes | None]:
        kv = await self._subject_bucket("subject_keys")
        found: dict[str, bytes | None] = {}
        for digest in digests:
            value = await self._kv_get(kv, f"k.{digest}")
            if value:
                found[digest] = None if value == GONE else value
        return found

    async def add_subject_keys(
        self, keys: Mapping[str, bytes], uses: Collection[SubjectUse]
    ) -> dict[str, bytes | None]:
        kv = await self._subject_bucket("subject_keys")
        for digest, key in keys.items():
            await self._create_key(kv, f"k.{digest}", key)
        for digest, name, aggregate_id in uses:
            await self._add_use(kv, digest, (name, aggregate_id))
        return {d: k for d, k in (await self.load_subject_keys(list(keys))).items()}

    async def _add_use(self, kv: KeyValue, digest: str, use: tuple[str, str]) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        key = f"u.{digest}"
        while True:
            revision, stored = await self._reads(kv).latest(key)
            known = _uses_decode(stored) if stored else []
            if use in known:
                return
            try:
                # Revision 0 (no such key) creates it.
                await kv.update(key, _uses_encode([*known, use]), last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # another writer added a use meanwhile: add to theirs
            except Exception as exc:
                raise _unavailable(kv._name, exc) from exc

    async def forget_subject_key(self, digest: str, at: datetime) -> Forgetting:
        keys = await self._subject_bucket("subject_keys")
        record = await self._subject_bucket("forgotten")
        before = await self._kv_get(keys, f"k.{digest}")
        destroyed = bool(before) and before != GONE
        try:
            await keys.put(f"k.{digest}", GONE)
        except Exception as exc:
            raise _unavailable(keys._name, exc) from exc
        await self._create_key(record, digest, at.isoformat().encode())
        first = await self._kv_get(record, digest)
        return Forgetting(
            digest=digest,
            forgotten_at=datetime.fromisoformat(first.decode()) if first else at,
            destroyed=destroyed,
            aggregates=tuple(await self.subject_uses(digest)),
        )

    async def drop_subject_key(self, digest: str) -> None:
        kv = await self._subject_bucket("subject_keys")
        value = await self._kv_get(kv, f"k.{digest}")
        if value is None or value == GONE:
            return  # a forgotten subject's record stays
        try:
            await kv.purge(f"k.{digest}")
        except Exception as exc:
            raise _unavailable(kv._name, exc) from exc

    async def subject_uses(self, digest: str) -> Sequence[tuple[str, str]]:
        kv = await self._subject_bucket("subject_keys")
        value = await self._kv_get(kv, f"u.{digest}")
        return sorted(_uses_decode(value)) if value else []

    async def forgotten_subjects(self, since: datetime | None = None) -> list[ForgottenSubject]:
        from nats.js.errors import NoKeysError

        kv = await self._subject_bucket("forgotten")
        try:
            digests = await kv.keys()
        except NoKeysError:
            return []
        except Exception as exc:
            raise _unavailable(kv._name, exc) from exc
        found = []
        for digest in digests:
            value = await self._kv_get(kv, digest)
            if not value:
                continue
            at = datetime.fromisoformat(value.decode())
            if since is None or at > since:
                found.append(ForgottenSubject(digest=digest, forgotten_at=at))
        return sorted(found, key=lambda f: (f.forgotten_at, f.digest))


def _unavailable(bucket: str, exc: Any) -> StoreUnavailable:
    return StoreUnavailable(f"subject key bucket {bucket!r}: {type(exc).__name__}: {exc}")
