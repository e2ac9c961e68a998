"""Public integration events: what a publisher sends instead of the internal events.

Internal event classes change with the model; consumers in other services should not have to
follow. A :class:`Transform` maps each internal event to a public one (a different class: renamed,
fields dropped or derived) or to ``None`` to publish nothing for it, and declares the public types
it emits, under their CloudEvent ``type``, so their JSON schemas can be generated and a mistake
(an undeclared type) is caught rather than published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.events import Event


class Transform:
    """A function ``(event) -> integration event | None`` and the types it may return.

    ``emits`` maps each CloudEvent ``type`` to the class published under it, or lists the
    classes (their ``type`` is then the class name)::

        def public(event: Event[CartEvent]) -> object | None:
            if isinstance(event.data, CartPaid):
                return OrderPaid(order=event.aggregate_id, cents=event.data.total)
            return None  # nothing else leaves the service

        to_public = Transform(public, emits={"shop.order.paid": OrderPaid})
    """

    __slots__ = ("emits", "function", "types")

    def __init__(
        self,
        function: Callable[[Event[Any]], object | None],
        *,
        emits: Mapping[str, type[Any]] | Iterable[type[Any]],
    ) -> None:
        self.function = function
        if isinstance(emits, Mapping):
            self.emits: dict[str, type[Any]] = dict(emits)
        else:
            self.emits = {cls.__name__: cls for cls in emits}
        if not self.emits:
            raise ConfigurationError("a transform must declare the types it emits")
        self.types: dict[type[Any], str] = {cls: name for name, cls in self.emits.items()}

    def __call__(self, event: Event[Any]) -> tuple[str, object] | None:
        """The CloudEvent ``type`` and the data to publish for ``event``, or ``None``."""
        public = self.function(event)
        if public is None:
            return None
        name = self.types.get(type(public))
        if name is None:
            raise ConfigurationError(
                f"the transform returned a {type(public).__name__} for {event.name} "
                f"(aggregate {event.aggregate_name} {event.aggregate_id!r}, version "
                f"{event.version}), which is not among the types it emits: "
                f"{', '.join(sorted(self.emits))}"
            )
        return name, public

    def schemas(self) -> dict[str, dict[str, Any]]:
        """The JSON schema of each emitted type, by CloudEvent ``type``."""
        return {name: msgspec.json.schema(cls) for name, cls in self.emits.items()}
