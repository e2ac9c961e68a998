"""Event schema evolution: revisions of event classes and the upcasters between them.

Stored rows are never rewritten. An event class declares its current revision with a class
attribute ``__revision__`` (1 when absent); its rows are stored under ``Name`` for revision 1 and
``Name@N`` after that. When an older row is read, registered upcasters turn its JSON payload,
one revision at a time, into the shape of the current class: a field renamed, added with a
default, or changed in type; an event renamed or split in several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eventsignal.domain.errors import ConfigurationError

__all__ = ["Upcaster", "index_upcasters", "revision_of", "split_stored_name", "stored_name"]

Payload = dict[str, Any]
Upcast = Callable[[Payload], Payload | list[tuple[str, int, Payload]]]


@dataclass(frozen=True, slots=True)
class Upcaster:
    """Turns stored payloads of ``event`` at ``revision`` into the next shape.

    ``upcast`` returns either a payload (the same event, one revision later) or a list of
    ``(event name, revision, payload)`` for an event renamed or split into several.
    """

    event: str
    revision: int
    upcast: Upcast


def revision_of(cls: type[Any]) -> int:
    """The class's ``__revision__`` (1 when absent), checked to be a positive int."""
    revision = getattr(cls, "__revision__", 1)
    if type(revision) is not int or revision < 1:
        raise ConfigurationError(
            f"{cls.__name__}.__revision__ must be a positive int, not {revision!r}"
        )
    return revision


def stored_name(name: str, revision: int) -> str:
    """The name a row carries: the event name, with ``@revision`` after the first revision."""
    return name if revision == 1 else f"{name}@{revision}"


def split_stored_name(stored: str) -> tuple[str, int]:
    """The event name and revision a stored name carries (``"Name@2"`` -> ``("Name", 2)``)."""
    name, sep, revision = stored.rpartition("@")
    if sep and revision.isdigit():
        return name, int(revision)
    return stored, 1


def index_upcasters(upcasters: Iterable[Upcaster]) -> dict[tuple[str, int], Upcast]:
    """Upcasters by ``(event, revision)``; two for the same revision are a configuration error."""
    table: dict[tuple[str, int], Upcast] = {}
    for upcaster in upcasters:
        key = (upcaster.event, upcaster.revision)
        if key in table:
            raise ConfigurationError(
                f"two upcasters for event {upcaster.event!r} revision {upcaster.revision}"
            )
        table[key] = upcaster.upcast
    return table
