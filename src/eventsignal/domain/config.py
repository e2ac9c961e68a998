"""How one aggregate type is declared: two plain functions and the event classes they speak."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.events import Event
from eventsignal.domain.evolution import Upcaster, index_upcasters, revision_of, stored_name
from eventsignal.domain.identity import validate_name
from eventsignal.domain.snapshots import SnapshotPolicy

S = TypeVar("S")
C = TypeVar("C")

CommandResult = Sequence[Any] | Awaitable[Sequence[Any]]
CommandHandler = Callable[[C, S], CommandResult]
EventHandler = Callable[[S, Event[Any]], S]


@dataclass(frozen=True, slots=True)
class AggregateConfig(Generic[S, C]):
    """The declaration of one aggregate type.

    ``command_handler(command, state)`` returns the events a command produces (an empty list is
    fine), or raises :class:`~eventsignal.CommandRejected`; it may be a coroutine function.
    ``event_handler(state, event)`` returns the next state and must be pure, since it runs again
    whenever the aggregate is rebuilt.

    ``events`` lists the event classes, or maps stored names to classes. A class is stored under
    its ``__name__`` unless the mapping says otherwise; renaming a class therefore needs the
    mapping (or an upcaster) to keep old rows readable. ``upcasters`` read rows written by
    older revisions of the event classes (see :mod:`eventsignal.domain.evolution`).

    ``snapshots`` turns on snapshots of the state (see :class:`SnapshotPolicy`); the state is
    then encoded like events, so it must be a dataclass, msgspec Struct or pydantic model.

    ``rebuild_envelopes=False`` declares that the event handler reads nothing of an event but
    its ``data``, ``version`` and ``name`` (and the aggregate's name, id and tenant): a rebuild
    then reads just those of each stored event, which costs a fraction of reading them whole
    (see :mod:`eventsignal.folding`). The events a rebuild hands the handler then carry a nil
    id, the Unix epoch as timestamp, position 0 and no metadata; on the command path it still
    gets whole envelopes.
    """

    name: str
    initial_state: S
    command_handler: CommandHandler[C, S]
    event_handler: EventHandler[S]
    events: Iterable[type[Any]] | Mapping[str, type[Any]] = ()
    upcasters: Sequence[Upcaster] = ()
    snapshots: SnapshotPolicy | None = None
    rebuild_envelopes: bool = True
    event_types: Mapping[str, type[Any]] = field(init=False)
    """Stored name (with its ``@revision``) to the current event class."""

    def __post_init__(self) -> None:
        validate_name(self.name)
        if isinstance(self.events, Mapping):
            types = dict(self.events)
        else:
            types = {cls.__name__: cls for cls in self.events}
        if not types:
            raise ConfigurationError(f"aggregate config {self.name!r} declares no event classes")
        seen: dict[type[Any], str] = {}
        for event_name, cls in types.items():
            if not isinstance(cls, type):
                raise ConfigurationError(
                    f"event {event_name!r} of {self.name!r} is not a class: {cls!r}"
                )
            if cls in seen:
                raise ConfigurationError(
                    f"event class {cls.__name__} of {self.name!r} is registered twice, "
                    f"as {seen[cls]!r} and {event_name!r}"
                )
            seen[cls] = event_name
        types = {stored_name(name, revision_of(cls)): cls for name, cls in types.items()}
        object.__setattr__(self, "event_types", types)
        index_upcasters(self.upcasters)  # refuses two upcasters for one revision
