"""Rewriting the payload of events already stored: what re-encryption under a new key needs.

An event's envelope (id, aggregate, version, name, position, metadata) never changes; only its
``data`` bytes may be replaced, by other bytes that decode to the same event. Each change names
the bytes it expects to find, so a rewrite never overwrites a payload someone else changed in
the meantime (another rewrite run, say): it is a compare-and-set per event, atomic per call.
Appends only add events, so a rewrite of existing ones cannot race them into lost data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from eventsignal.domain.errors import RewriteNotSupported


class PayloadChange(msgspec.Struct, frozen=True):
    """Replace the payload of the event at ``position`` with ``new``, if it is still ``old``."""

    position: int
    old: bytes
    new: bytes


class StoredPayload(msgspec.Struct, frozen=True, kw_only=True):
    """What a rewrite needs of an event kept outside the log (archived): its row and payload."""

    position: int
    aggregate_name: str
    aggregate_id: str
    version: int
    name: str
    data: bytes


@runtime_checkable
class PayloadRewrite(Protocol):
    """A store whose events' payloads can be rewritten in place.

    Contract (checked by the re-encryption tests on every store that offers it):

    * ``rewrite_payloads`` applies all its changes in one atomic step; a change whose event
      is gone or whose payload is no longer ``old`` is skipped; it returns how many it applied.
      With ``archived=True`` it rewrites events in cold storage (archived streams) instead of
      the log; ``archived_payloads`` pages through those, in position order.
    * Nothing but ``data`` changes: positions, versions, metadata and the order of the log stay.
    * It never blocks appends for longer than its own short write takes.
    """

    async def rewrite_payloads(
        self, changes: Sequence[PayloadChange], *, archived: bool = False
    ) -> int:
        """Apply ``changes`` atomically, skipping those whose payload moved on; return how
        many were applied."""
        ...

    async def archived_payloads(self, after_position: int, limit: int) -> Sequence[StoredPayload]:
        """At most ``limit`` archived events after ``after_position``, in position order."""
        ...


def rewriter_of(store: object, operation: str = "re-encryption") -> PayloadRewrite:
    """``store`` as a :class:`PayloadRewrite`, or an error naming it and what to do instead."""
    if isinstance(store, PayloadRewrite):
        return store
    # A store that cannot may say what to do instead (``rewrite_refusal``).
    advice = str(getattr(store, "rewrite_refusal", ""))
    raise RewriteNotSupported(type(store).__name__, operation, advice)
