"""Finding stored events that cannot be read.

A store hands back rows whose envelope is bad flagged with a defect (see
:mod:`eventsignal.stores.rows`); with the aggregate configs at hand, each event's data is also
decoded as the application would decode it (upcasters included). Encrypted or compressed data
needs its transcoder, which this check does not take: check such stores from the application.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import EventSerializationError
from eventsignal.privacy import Privacy, personal_data
from eventsignal.serialization import EventSerializer
from eventsignal.stores.base import EventStore


class UnreadableEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A stored event that cannot be read, and why."""

    position: int
    aggregate_name: str
    aggregate_id: str
    version: int
    event_name: str
    problem: str


async def unreadable_events(
    store: EventStore,
    configs: Iterable[AggregateConfig[Any, Any]] = (),
    *,
    after_position: int = 0,
    page: int = 1000,
    privacy: Privacy | None = None,
) -> AsyncIterator[UnreadableEvent]:
    """Every stored event after ``after_position`` that cannot be read, in position order.

    Without ``configs`` only the envelopes are checked; with them, the data of those aggregate
    types too (``privacy`` as the application's, for events with personal fields whose keys
    are wrapped by a master key).
    """
    serializers = {
        c.name: EventSerializer(
            c.name,
            c.event_types,
            None,
            c.upcasters,
            personal=personal_data(c.name, c.event_types, privacy),
        )
        for c in configs
    }
    position = after_position
    while True:
        batch = await store.read_all(position, page)
        if not batch:
            return
        for reader in serializers.values():
            if reader.personal is not None:
                await reader.personal.unlock(store, batch)
        for record in batch:
            problem = record.defect
            serializer = serializers.get(record.aggregate_name)
            if problem is None and serializer is not None:
                try:
                    serializer.decode_all(record)
                except EventSerializationError as exc:
                    problem = exc.reason
            if problem is not None:
                yield UnreadableEvent(
                    position=record.position,
                    aggregate_name=record.aggregate_name,
                    aggregate_id=record.aggregate_id,
                    version=record.version,
                    event_name=record.name,
                    problem=problem,
                )
        position = batch[-1].position
