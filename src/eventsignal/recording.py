"""Deciding a command: the command handler's events, applied to the state and encoded.

Nothing here touches the store or the pool. The events are applied and encoded before anything is
stored, so a failing event handler, or an event that cannot be stored as it is, stores nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError, InvalidHandlerResult
from eventsignal.domain.events import Event, new_event_id
from eventsignal.serialization import EventSerializer
from eventsignal.stores.base import EventStore, StoredEvent

S = TypeVar("S")

Decision = tuple[S, Sequence[Event[Any]], Sequence[StoredEvent]]
"""The next state, the events as handlers see them, and the same events as the store keeps them."""

_now = datetime.now


class Recorder(Generic[S]):
    """Runs one aggregate type's command handler and records the events it returns."""

    __slots__ = (
        "_aggregate_name",
        "_apply",
        "_encode",
        "_handle",
        "_serializer",
        "_store",
        "_tenant",
    )

    def __init__(
        self,
        config: AggregateConfig[S, Any],
        serializer: EventSerializer,
        store: EventStore | None = None,
        tenant: str = "",
    ) -> None:
        self._aggregate_name = config.name
        self._tenant = tenant
        self._handle = config.command_handler
        self._apply = config.event_handler
        # A tenant's rows are encoded as that tenant's (bound to it, under its keys).
        self._encode = partial(serializer.encode, tenant=tenant) if tenant else serializer.encode
        # Only for event classes with personal fields: the store that keeps their keys.
        self._serializer = serializer if serializer.personal is not None else None
        self._store = store

    def decide(
        self,
        command: object,
        state: S,
        aggregate_id: str,
        version: int,
        metadata: Mapping[str, str],
        produced: Any = None,
    ) -> Decision[S] | Awaitable[Decision[S]]:
        """Run the command against ``state`` (at ``version``); apply and encode its events.

        A command that produces no events leaves the state as it is and records nothing.

        The answer is the decision itself (a tuple) when nothing had to be awaited, which is the
        case of a plain command handler; otherwise (a coroutine handler, personal fields) it is
        an awaitable of the decision. Callers await only what is not a tuple, so a plain handler
        costs no coroutine. ``produced`` is the handler's answer when it is known already (a
        coroutine handler's, awaited).
        """
        if produced is None:
            produced = self._handle(command, state)
        if type(produced) is not list:  # a list is by far the most common answer
            if inspect.isawaitable(produced):
                return self._decide_awaited(
                    produced, state, aggregate_id, version, metadata, command
                )
            produced = self._events_of(produced, aggregate_id, command)
        if not produced:
            return state, (), ()
        if self._serializer is not None:
            return self._decide_personal(produced, state, aggregate_id, version, metadata)
        name = self._aggregate_name
        tenant = self._tenant
        apply = self._apply
        encode = self._encode
        now = _now(UTC)  # one timestamp for all the events of a command
        envelopes: list[Event[Any]] = []
        records: list[StoredEvent] = []
        for data in produced:
            version += 1
            event_name, payload = encode(data, aggregate_id=aggregate_id, version=version)
            event_id = new_event_id()
            records.append(
                StoredEvent(
                    id=event_id,
                    aggregate_name=name,
                    aggregate_id=aggregate_id,
                    version=version,
                    name=event_name,
                    timestamp=now,
                    data=payload,
                    metadata=metadata,
                    tenant=tenant,
                )
            )
            event = Event(
                id=event_id,
                aggregate_name=name,
                aggregate_id=aggregate_id,
                version=version,
                name=event_name,
                timestamp=now,
                position=0,
                data=data,
                metadata=metadata,
                tenant=tenant,
            )
            state = apply(state, event)
            envelopes.append(event)
        return state, envelopes, records

    async def decided(
        self,
        command: object,
        state: S,
        aggregate_id: str,
        version: int,
        metadata: Mapping[str, str],
    ) -> Decision[S]:
        """:meth:`decide`, awaited when it has to be (for paths where a coroutine costs
        nothing worth saving)."""
        decision = self.decide(command, state, aggregate_id, version, metadata)
        if isinstance(decision, tuple):
            return decision
        return await decision

    async def _decide_awaited(
        self,
        produced: Awaitable[object],
        state: S,
        aggregate_id: str,
        version: int,
        metadata: Mapping[str, str],
        command: object,
    ) -> Decision[S]:
        """:meth:`decide` for a command handler that answered with an awaitable."""
        events = self._events_of(await produced, aggregate_id, command)
        decision = self.decide(command, state, aggregate_id, version, metadata, events)
        if isinstance(decision, tuple):
            return decision
        return await decision  # personal fields

    async def _decide_personal(
        self,
        produced: list[Any],
        state: S,
        aggregate_id: str,
        version: int,
        metadata: Mapping[str, str],
    ) -> Decision[S]:
        """:meth:`decide` for event classes with personal fields: the subjects' keys are made
        ready first, and each event's encrypted values join its own copy of the metadata."""
        serializer = self._serializer
        assert serializer is not None
        if self._store is None:
            raise ConfigurationError(
                f"{self._aggregate_name}: personal fields need the store that keeps their keys"
            )
        await serializer.personal.prepare(self._store, produced, aggregate_id)
        name = self._aggregate_name
        tenant = self._tenant
        now = _now(UTC)
        envelopes: list[Event[Any]] = []
        records: list[StoredEvent] = []
        for data in produced:
            version += 1
            event_name, payload, sealed = serializer.encode_sealed(
                data, aggregate_id=aggregate_id, version=version, tenant=tenant
            )
            event_id = new_event_id()
            records.append(
                StoredEvent(
                    id=event_id,
                    aggregate_name=name,
                    aggregate_id=aggregate_id,
                    version=version,
                    name=event_name,
                    timestamp=now,
                    data=payload,
                    metadata={**metadata, **sealed} if sealed else metadata,
                    tenant=tenant,
                )
            )
            event = Event(
                id=event_id,
                aggregate_name=name,
                aggregate_id=aggregate_id,
                version=version,
                name=event_name,
                timestamp=now,
                position=0,
                data=data,
                metadata=metadata,
                tenant=tenant,
            )
            state = self._apply(state, event)
            envelopes.append(event)
        return state, envelopes, records

    def _events_of(self, produced: object, aggregate_id: str, command: object) -> list[Any]:
        """A command handler's result (awaited, if it was awaitable) as a list of events:
        refused unless it is a list, tuple or iterator (a bare event, ``None``, a string or a
        dict are mistakes that would otherwise fail later with a puzzling error)."""
        if type(produced) is list:
            return produced
        if isinstance(produced, tuple | Iterator):
            return list(produced)
        raise InvalidHandlerResult(
            self._aggregate_name, aggregate_id, type(command).__name__, produced
        )
