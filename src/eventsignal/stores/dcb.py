"""What every store's DCB view shares: the contract, and how a DCB event sits in the one log.

Aggregates and DCB events share one log, so subscriptions, publishers and rebuilds see both in
global order. A DCB event is stored as an envelope without an aggregate:

* ``aggregate_name`` is empty (no aggregate type may have that name);
* ``aggregate_id`` is its first tag (empty without tags): the key partitioned subscriptions
  split it by;
* ``version`` repeats its position (it has no version of its own, and the pair stays unique);
* its tags are kept, as a JSON array, under the metadata key ``dcb.tags``; stores that can
  index them also keep them in a table of their own.

An aggregate's events carry one tag without storing it: ``"<aggregate name>:<aggregate id>"``
(:func:`~eventsignal.domain.dcb.aggregate_tag`), so a query can select them and a condition can
guard them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import msgspec

from eventsignal.domain.dcb import (
    TAG_SEPARATOR,
    AppendCondition,
    DcbEvent,
    Query,
    SequencedEvent,
    aggregate_tag,
)
from eventsignal.domain.errors import ConfigurationError, InvalidAggregateId
from eventsignal.domain.events import new_event_id
from eventsignal.domain.identity import validate_name
from eventsignal.stores.base import StoredEvent, check_metadata

TAGS_KEY = "dcb.tags"
DCB_AGGREGATE = ""  # the aggregate name of a DCB event: none

_encode_tags = msgspec.json.Encoder().encode
_decode_tags = msgspec.json.Decoder(list[str]).decode


@runtime_checkable
class DcbStore(Protocol):
    """Reading and appending by query, over one store's log.

    * ``read`` returns the events that ``query`` selects, after position ``after`` (when given),
      at most ``limit`` of them, in ascending position, from one consistent state of the store.
    * ``append`` stores ``events`` atomically (all or none) and returns the position of the last
      one; with a ``condition`` it first checks, against everything committed, that no event
      selected by ``condition.fail_if_events_match`` is stored after ``condition.after``, and
      raises :class:`~eventsignal.AppendConditionFailed` (storing nothing) if one is.
    """

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        """The events ``query`` selects, after position ``after``, ascending, at most ``limit``."""
        ...

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int: ...


def checked_events(events: Sequence[DcbEvent] | DcbEvent) -> list[DcbEvent]:
    """The events of one append, refused before anything is written if they cannot be stored."""
    batch = [events] if isinstance(events, DcbEvent) else list(events)
    if not batch:
        raise ConfigurationError("an append needs at least one event")
    for event in batch:
        if not isinstance(event, DcbEvent):
            raise ConfigurationError(f"append takes DcbEvent objects, not {type(event).__name__}")
    return batch


def checked_condition(condition: AppendCondition | None) -> AppendCondition | None:
    if condition is not None and not isinstance(condition, AppendCondition):
        raise ConfigurationError(
            f"condition must be an AppendCondition, not {type(condition).__name__}"
        )
    return condition


def to_stored(event: DcbEvent, position: int = 0, timestamp: datetime | None = None) -> StoredEvent:
    """The envelope of a DCB event (see the module's docstring)."""
    metadata = dict(event.metadata)
    if TAGS_KEY in metadata:
        raise ConfigurationError(f"event {event.type!r}: metadata key {TAGS_KEY!r} is reserved")
    tags = tuple(event.tags)
    if tags:
        metadata[TAGS_KEY] = _encode_tags(tags).decode()
    stored = StoredEvent(
        id=new_event_id(),
        aggregate_name=DCB_AGGREGATE,
        aggregate_id=tags[0] if tags else "",
        version=position,
        name=event.type,
        timestamp=timestamp or datetime.now(UTC),
        data=event.data,
        metadata=metadata,
        position=position,
    )
    if metadata:
        check_metadata(stored)
    return stored


def dcb_envelope(stored: StoredEvent) -> StoredEvent:
    """A DCB event read from a store that keeps its envelope partly elsewhere (its version
    and partition key are derived here from its position and tags)."""
    tags = tags_of_metadata(stored.metadata)
    return msgspec.structs.replace(
        stored, version=stored.position, aggregate_id=tags[0] if tags else ""
    )


class Envelope(Protocol):
    """What a query looks at in a stored event (a store may keep its events in a form of its
    own, with these fields)."""

    @property
    def aggregate_name(self) -> str: ...

    @property
    def aggregate_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...


def tags_of(stored: Envelope) -> tuple[str, ...]:
    """Every tag of a stored event: a DCB event's own, or an aggregate event's implicit one."""
    if stored.aggregate_name != DCB_AGGREGATE:
        return (aggregate_tag(stored.aggregate_name, stored.aggregate_id),)
    return tags_of_metadata(stored.metadata)


def tags_of_metadata(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """The tags a DCB event's metadata keeps."""
    text = metadata.get(TAGS_KEY)
    return tuple(_decode_tags(text)) if text else ()


def sequenced(stored: StoredEvent) -> SequencedEvent:
    """A stored event (DCB or aggregate) as the DCB model sees it."""
    metadata: Mapping[str, str] = stored.metadata
    if TAGS_KEY in metadata:
        metadata = {k: v for k, v in metadata.items() if k != TAGS_KEY}
    return SequencedEvent(
        stored.position, DcbEvent(stored.name, stored.data, tags_of(stored), metadata)
    )


def matches(query: Query, stored: Envelope) -> bool:
    """Whether ``query`` selects ``stored``, checked in memory."""
    return query.everything or query.matches(stored.name, tags_of(stored))


def split_tag(tag: str) -> tuple[str, str] | None:
    """The aggregate that carries ``tag`` implicitly, if the tag has that form."""
    name, separator, aggregate_id = tag.partition(TAG_SEPARATOR)
    if not separator or not aggregate_id:
        return None
    try:
        validate_name(name)
    except InvalidAggregateId:  # not an aggregate's tag: only DCB events carry it
        return None
    return name, aggregate_id


def check_limit(limit: int | None) -> None:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ConfigurationError(f"limit must be a count (>= 0) or None, not {limit!r}")
