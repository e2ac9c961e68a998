"""Reads of a JetStream key-value bucket that last through a leader change.

The client's ``KeyValue.get`` asks once and waits its whole timeout for the answer, and a get
sent while a replicated bucket elects its leader is answered by nobody. Reads here go to the
bucket's stream through :func:`~eventsignal.stores.nats.requests.request`, so they are asked
again while nobody answers or the answer is late, and wait out an election, as reads of the
event stream do. Writes stay with the client: a write that got no answer may have been stored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from eventsignal.domain.errors import ConfigurationError, StoreUnavailable
from eventsignal.stores.nats.requests import (
    READ_TRY,
    Stored,
    direct_answer,
    from_leader,
    leader_get,
    request,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

_REMOVED = ("DEL", "PURGE")  # a key's delete or purge marker: the key holds no value
# What a key may hold (as the client checks on its writes): a key goes into a subject, where a
# wildcard or a space would select other keys' messages.
_KEY = re.compile(r"[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*")


class Entry(NamedTuple):
    """A key's latest revision and its value (``None``: deleted or purged, or, at revision 0,
    never written)."""

    revision: int
    value: bytes | None


class BucketReads:
    """The reads of one bucket.

    A ``replicated`` bucket, or one without direct gets, is read through its stream's leader,
    which has every acknowledged write (a follower answering a direct get may not yet); a bucket
    on one server by a direct get, which skips the JSON and base64 of the leader's answer.
    """

    def __init__(self, kv: KeyValue, *, replicated: bool) -> None:
        self.kv = kv
        self.stream: str = kv._stream
        self._leader = replicated or not kv._direct
        self._direct = f"$JS.API.DIRECT.GET.{self.stream}.{kv._pre}"

    @property
    def patience(self) -> float:
        """Seconds to wait for an answer, and to ask again while nobody is there to give one."""
        return float(self.kv._js._timeout)

    async def ask(self, subject: str, payload: bytes, within: float | None = None) -> Msg:
        """A read of the bucket's stream, asked again while nobody answers or the answer is late
        (see :data:`~eventsignal.stores.nats.requests.READ_TRY`), for ``within`` seconds (the
        client's timeout unless said)."""
        return await request(
            self.kv._js._nc,
            subject,
            payload,
            None,
            within=self.patience if within is None else within,
            each=READ_TRY,
        )

    def check(self, key: str) -> str:
        """``key``, refused unless it names exactly one key of the bucket."""
        if _KEY.fullmatch(key) is None:
            raise ConfigurationError(
                f"{key!r} cannot be a key of bucket {self.kv._name!r}: keys hold letters, "
                "digits and - / _ = in tokens separated by dots"
            )
        return key

    async def latest(self, key: str) -> Entry:
        """``key`` as it is now (a deleted key with the revision of its marker)."""
        self.check(key)
        message = await (self._from_leader(key) if self._leader else self._direct_get(key))
        if message is None:
            return Entry(0, None)
        _, revision, headers, value = message
        if headers.get("KV-Operation") in _REMOVED:
            return Entry(revision, None)
        return Entry(revision, value)

    async def _direct_get(self, key: str) -> Stored | None:
        try:
            reply = await self.ask(self._direct + key, b"")
        except Exception as exc:
            raise self._unavailable(key, exc) from exc
        message, failure = direct_answer(reply)
        if failure is not None:
            raise StoreUnavailable(
                f"direct get of {key!r} from bucket {self.kv._name!r} failed: {failure}"
            )
        return message

    async def _from_leader(self, key: str) -> Stored | None:
        subject, payload = leader_get(self.stream, {"last_by_subj": self.kv._pre + key})
        try:
            message, error = await from_leader(
                lambda left: self.ask(subject, payload, left), self.patience
            )
        except Exception as exc:
            raise self._unavailable(key, exc) from exc
        if error is not None:
            raise StoreUnavailable(f"reading {key!r} from bucket {self.kv._name!r} failed: {error}")
        return message

    def _unavailable(self, key: str, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"cannot read {key!r} from bucket {self.kv._name!r}: {type(exc).__name__}: {exc}"
        )


__all__ = ["BucketReads", "Entry"]
