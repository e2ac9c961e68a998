"""Rebuilding an aggregate from just what its event handler reads.

A rebuild normally reads every stored event whole: id, timestamp, position and metadata around
the data, since the event handler is handed the envelope as it was stored. An aggregate type
whose handler reads only an event's ``data``, ``version`` and ``name`` says so with
``AggregateConfig(rebuild_envelopes=False)``; its rebuilds then read just ``(version, name,
data)`` of each row from a store that offers it (:class:`~eventsignal.stores.base.FoldReads`:
memory, SQLite, PostgreSQL), decode each payload straight into its event class and apply it.
On PostgreSQL that leaves out the columns that cost the most to load (a timestamp with its time
zone, a UUID) and every per-row object but the event itself.

Only rows whose bytes are the event's JSON as it is can be read this way: a transcoder (a codec)
or personal fields make a Signal keep the general path. A row this fold cannot take (an older
revision for an upcaster, a deletion record, bytes that do not decode) sends the whole rebuild
back to the general path, which reads the envelopes and upcasts the row or names what is wrong,
so both paths reach the same state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import msgspec

from eventsignal.domain.config import AggregateConfig, EventHandler
from eventsignal.domain.errors import StoreInconsistent
from eventsignal.domain.events import Event
from eventsignal.serialization import EventSerializer
from eventsignal.stores.base import FoldReads, FoldRow
from eventsignal.stores.rows import UNREADABLE_ID, UNREADABLE_TIME

S = TypeVar("S")

FOLD_SLICE = 2000
"""Events applied between yields to the event loop during a rebuild."""

ReadRows = Callable[[str, str, int], AsyncGenerator[Sequence[FoldRow], None]]
_replace = msgspec.structs.replace
_NO_METADATA: Mapping[str, str] = MappingProxyType({})  # shared by every event: read-only


class LeanFold(Generic[S]):
    """The rebuild of one aggregate type, in one tenant, from ``(version, name, data)`` rows."""

    __slots__ = ("_apply", "_decoders", "_name", "_tenant", "read")

    def __init__(
        self,
        aggregate_name: str,
        event_handler: EventHandler[S],
        decoders: Mapping[str, Callable[[bytes], Any]],
        read: ReadRows,
        tenant: str,
    ) -> None:
        self._name = aggregate_name
        self._apply = event_handler
        self._decoders = dict(decoders)
        self._tenant = tenant
        self.read = read
        """``read(aggregate_name, aggregate_id, after_version)``: the rows to fold."""

    async def fold(
        self, aggregate_id: str, state: S, version: int, chunks: AsyncIterator[Sequence[FoldRow]]
    ) -> tuple[S, int, int] | None:
        """The state and version reached by applying the rows of ``chunks`` to ``state`` at
        ``version``, and how many were applied; ``None`` when some row needs the general path
        (nothing is kept of this attempt then; the caller closes ``chunks``).

        Rows that do not start right after ``version`` (a truncated history) go to the general
        path too, which says what is missing; a later version that does not follow the one
        before raises :class:`~eventsignal.StoreInconsistent`, as the general path does.
        """
        apply = self._apply
        decoder = self._decoders.get
        aggregate_name = self._name
        # Each event is this one with its version, name and data: replacing three fields costs
        # less than building ten.
        blank = Event(
            id=UNREADABLE_ID,
            aggregate_name=aggregate_name,
            aggregate_id=aggregate_id,
            version=0,
            name="",
            timestamp=UNREADABLE_TIME,
            position=0,
            data=None,
            metadata=_NO_METADATA,
            tenant=self._tenant,
        )
        first = version + 1
        applied = 0
        due = FOLD_SLICE
        async for rows in chunks:
            if not applied and rows and rows[0][0] != first:
                return None
            for start in range(0, len(rows), FOLD_SLICE):
                for row_version, name, data in rows[start : start + FOLD_SLICE]:
                    if row_version != version + 1:
                        raise StoreInconsistent(
                            f"{aggregate_name} {aggregate_id!r}: store returned version "
                            f"{row_version} after version {version}"
                        )
                    decode = decoder(name)
                    if decode is None:
                        return None  # an older revision, a deletion record: the general path
                    try:
                        event = decode(data)
                    except Exception:
                        return None  # the general path raises the error that names the row
                    version = row_version
                    state = apply(state, _replace(blank, version=version, name=name, data=event))
                applied = version + 1 - first
                if applied >= due:
                    await asyncio.sleep(0)  # other aggregates are served between slices
                    due = applied + FOLD_SLICE
        return state, version, applied


def lean_fold(
    config: AggregateConfig[S, Any], serializer: EventSerializer, store: object, tenant: str
) -> LeanFold[S] | None:
    """The lean rebuild of ``config``'s aggregates from ``store`` (a tenant's view or a plain
    store), or ``None`` where rebuilds must read whole events: the handler reads envelopes, the
    store cannot read less, or the stored bytes need a transcoder or personal-data keys."""
    if config.rebuild_envelopes or not isinstance(store, FoldReads):
        return None
    decoders = serializer.direct_decoders()
    if not decoders:
        return None
    return LeanFold(config.name, config.event_handler, decoders, store.read_aggregate_data, tenant)
