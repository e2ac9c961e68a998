"""The one protocol every sink implements, so a new broker is one small module.

A sink publishes a batch of CloudEvents and returns only once the broker confirmed every one
(publisher confirms, the XADD reply, the JetStream ack, an HTTP 2xx): the publisher's checkpoint
moves past the batch after that. Order within a batch must be kept per ``partitionkey``. A sink
that cannot reach its broker, or gets no confirmation in time, raises
:class:`~eventsignal.BrokerUnavailable` (the batch is published again later, with the same ids);
any other error is the events' own (too large, refused) and ends with them parked.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from eventsignal.publishing.cloudevent import CloudEvent


@runtime_checkable
class Sink(Protocol):
    """Where a publisher sends its CloudEvents."""

    async def open(self) -> None:
        """Connect (and create what is missing, such as a stream); safe to call again."""
        ...

    async def close(self) -> None:
        """Disconnect; ``publish`` opens again if called after."""
        ...

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish ``events`` in order; return once the broker confirmed them all."""
        ...


class SinkLifecycle:
    """``async with sink:`` for sinks that define ``open`` and ``close``."""

    async def open(self) -> None:
        """Connect; a subclass defines it."""
        raise NotImplementedError

    async def close(self) -> None:
        """Disconnect; a subclass defines it."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
