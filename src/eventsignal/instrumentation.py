"""The seam through which tracing and metrics see commands, appends and rebuilds.

A :class:`~eventsignal.Signal` made without ``instrumentation=`` never touches this module's
objects on its command path. One made with it hands each command, append and rebuild to the
instrumentation, which runs it inside whatever scope it keeps (a span, a timer) and may add
metadata to the command's events (say a ``traceparent``). :mod:`eventsignal.otel` is the
implementation for OpenTelemetry; the protocol keeps the core free of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from eventsignal.stores.base import StoredEvent

T = TypeVar("T")

Append = Callable[[str, str, int, Sequence[StoredEvent]], Awaitable[Sequence[int]]]
Create = Callable[[str, str, Sequence[StoredEvent]], Awaitable[Sequence[int]]]


class Instrumentation(Protocol):
    """What a Signal asks of its instrumentation."""

    @property
    def active(self) -> bool:
        """Whether anything records now; while not, commands bypass the instrumentation."""
        ...

    def attach(self, signal: Any) -> None:
        """Called once by each Signal made with this instrumentation (for gauges of its pool)."""

    async def command(
        self,
        aggregate_name: str,
        aggregate_id: str,
        command: object,
        metadata: Mapping[str, str],
        run: Callable[[Mapping[str, str]], Awaitable[T]],
    ) -> T:
        """Run one command: ``run(metadata)`` with the metadata its events are to carry."""
        ...

    def wrap_append(self, store: Any, append: Append) -> Append:
        """The store's ``append``, as the Signal should call it."""
        ...

    def wrap_create(self, store: Any, create: Create) -> Create:
        """The store's ``create``, as the Signal should call it."""
        ...

    async def rebuild(
        self, aggregate_name: str, aggregate_id: str, run: Callable[[], Awaitable[T]]
    ) -> T:
        """Run the rebuild of one aggregate from the store."""
        ...
