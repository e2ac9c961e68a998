"""Reads of a JetStream key-value bucket that last through a leader change.

The client's ``KeyValue.get`` asks once and waits its whole timeout for the answer, and a get
sent while a replicated bucket elects its leader is answered by nobody. Reads here go to the
bucket's stream through :func:`~eventsignal.stores.nats.requests.request`, so they are asked
again while nobody answers or the answer is late, and wait out an election, as reads of the
event stream do. Writes stay with the client: a write that got no answer may have been stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from eventsignal.domain.errors import StoreUnavailable
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


class Entry(NamedTuple):
    """A key's latest revision and its value (``None``: deleted or purged, or, at revision 0,
    never written)."""

    revision: int
    value: bytes | None


class BucketReads:
    """The reads of one bucket.

    With ``leader``, keys are read through the stream's leader, which has every acknowledged
    write; else by a direct get (one replica, which then is the leader, and direct gets
    allowed), which skips the JSON and base64 of the leader's answer.
    """

    def __init__(self, kv: KeyValue, *, leader: bool) -> None:
        self.kv = kv
        self.stream: str = kv._stream
        self._leader = leader
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

    async def latest(self, key: str) -> Entry:
        """``key`` as it is now (a deleted key with the revision of its marker)."""
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
            raise StoreUnavailable(f"direct get of {key!r} from {self.kv._name} failed: {failure}")
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
            raise StoreUnavailable(f"reading {key!r} from {self.kv._name} failed: {error}")
        return message

    def _unavailable(self, key: str, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"cannot read {key!r} from {self.kv._name}: {exc}")


__all__ = ["BucketReads", "Entry"]
