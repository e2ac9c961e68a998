"""The model of dynamic consistency boundaries: tagged events, queries and append conditions.

A rule that spans several things ("a course takes at most 30 students, a student at most 5
courses") is decided on the events that a query selects, and the decision's events are appended
on the condition that no event matching that query was appended since it was read. The boundary
is the query, chosen per decision, instead of one aggregate fixed in advance.

These are plain values: stores check and keep them, :mod:`eventsignal.dcb` decides with them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from eventsignal.domain.errors import ConfigurationError

TAG_SEPARATOR = ":"


def aggregate_tag(aggregate_name: str, aggregate_id: str) -> str:
    """The tag every event of an aggregate carries without storing it: ``"name:id"``.

    Aggregate type names hold no ``":"``, so the first one splits a tag back into both parts.
    """
    return f"{aggregate_name}{TAG_SEPARATOR}{aggregate_id}"


def _texts(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ConfigurationError(
            f"{what} must be a collection of strings, not the string {values!r}"
        )
    texts = tuple(dict.fromkeys(values))  # duplicates say nothing more; order kept
    for text in texts:
        if type(text) is not str or not text:
            raise ConfigurationError(f"each of {what} must be a non-empty string, not {text!r}")
        _check_storable(text, what)
    return texts


def _check_storable(text: str, what: str) -> None:
    """Refuse what some store could not keep: a NUL character, or a lone surrogate."""
    if "\x00" in text:
        raise ConfigurationError(f"{what} {text!r} holds a NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ConfigurationError(f"{what} {text!r} is not valid Unicode") from None


@dataclass(frozen=True, slots=True)
class DcbEvent:
    """An event to append: its ``type``, its encoded ``data`` and the ``tags`` it is found by.

    ``metadata`` travels with it like an aggregate event's (correlation ids, tracing).
    """

    type: str
    data: bytes
    tags: Collection[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.type) is not str or not self.type:
            raise ConfigurationError(f"an event type must be a non-empty string, not {self.type!r}")
        _check_storable(self.type, "the event type")
        if not isinstance(self.data, bytes):
            raise ConfigurationError(
                f"event {self.type!r}: data must be bytes (encoded), not {type(self.data).__name__}"
            )
        object.__setattr__(self, "tags", _texts(self.tags, f"the tags of event {self.type!r}"))


@dataclass(frozen=True, slots=True)
class SequencedEvent:
    """An event as stored: its place in the store's one global order, and the event."""

    position: int
    event: DcbEvent


@dataclass(frozen=True, slots=True)
class QueryItem:
    """Selects events whose type is one of ``types`` (when given) and that carry every one of
    ``tags`` (when given); at least one of the two must be given."""

    types: Collection[str] = ()
    tags: Collection[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", _texts(self.types, "query types"))
        object.__setattr__(self, "tags", _texts(self.tags, "query tags"))
        if not self.types and not self.tags:
            raise ConfigurationError(
                "a query item needs types, tags or both (Query.all() selects every event)"
            )

    def matches(self, event_type: str, tags: Collection[str]) -> bool:
        """Whether an event of ``event_type`` carrying ``tags`` is selected by this item."""
        return (not self.types or event_type in self.types) and all(t in tags for t in self.tags)

    def __str__(self) -> str:
        parts = []
        if self.types:
            parts.append("type " + " or ".join(map(repr, self.types)))
        if self.tags:
            parts.append("tags " + ", ".join(map(repr, self.tags)))
        return " with ".join(parts)


@dataclass(frozen=True, slots=True)
class Query:
    """Selects the events that match any of its ``items``; :meth:`all` selects every event."""

    items: tuple[QueryItem, ...]
    everything: bool = False

    def __init__(self, items: Iterable[QueryItem], *, everything: bool = False) -> None:
        items = tuple(items)
        if any(not isinstance(item, QueryItem) for item in items):
            raise ConfigurationError("a query's items must be QueryItem objects")
        if not items and not everything:
            raise ConfigurationError("a query needs at least one item (Query.all() selects all)")
        object.__setattr__(self, "items", () if everything else tuple(dict.fromkeys(items)))
        object.__setattr__(self, "everything", everything)

    @classmethod
    def all(cls) -> Query:
        """The query that every event matches."""
        return cls((), everything=True)

    def matches(self, event_type: str, tags: Collection[str]) -> bool:
        """Whether an event of ``event_type`` carrying ``tags`` is selected by any item."""
        return self.everything or any(item.matches(event_type, tags) for item in self.items)

    def __str__(self) -> str:
        return "any event" if self.everything else "; or ".join(map(str, self.items))

    def __or__(self, other: Query) -> Query:
        """The union: events matching either query."""
        if self.everything or other.everything:
            return Query.all()
        return Query(self.items + other.items)


@dataclass(frozen=True, slots=True)
class AppendCondition:
    """Fail an append if an event matching ``fail_if_events_match`` is stored (after position
    ``after``, when given: the last position the decision read)."""

    fail_if_events_match: Query
    after: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fail_if_events_match, Query):
            raise ConfigurationError("fail_if_events_match must be a Query")
        if self.after is not None and (type(self.after) is not int or self.after < 0):
            raise ConfigurationError(f"after must be a position (>= 0) or None, not {self.after!r}")
