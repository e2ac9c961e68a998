"""The DCB view of a :class:`PostgresStore`.

Appends by query go through a group commit of their own: one call of
``eventsignal_dcb_append`` per batch, which takes the store's one ordering lock (the advisory lock
every append already takes, so positions become visible in order), checks the conditions of the
whole batch with one query against everything committed, and writes the events and tags of the
requests that passed. No lock is added: a batch of requests whose conditions do not touch each
other commits together. A request whose condition selects the events of an earlier request of
the same batch is sent with that dependency, and fails if that request is written: the batch
decides as if its requests ran one after the other. Conflicting writers are therefore never
both committed, in one process or in several.

A DCB event's position is drawn from the events' identity sequence inside the lock (so it is
ordered with every other append) and repeated as its version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec

from eventsignal.domain.dcb import AppendCondition, DcbEvent, Query, SequencedEvent
from eventsignal.domain.errors import AppendConditionFailed
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.dcb import (
    check_limit,
    checked_condition,
    checked_events,
    split_tag,
    to_stored,
)
from eventsignal.stores.postgres.arrays import (
    bytea_array,
    int4_array,
    int8_array,
    int8_scalar,
    int8_values,
    text_array,
    timestamptz_array,
    uuid_array,
)
from eventsignal.stores.postgres.dcb_schema import MIGRATIONS
from eventsignal.stores.postgres.held import HeldConnection
from eventsignal.stores.postgres.prepared import PreparedCall
from eventsignal.stores.rows import read_metadata
from eventsignal.stores.sql.batching import settle_batch
from eventsignal.stores.sql.contract import ensure_component
from eventsignal.stores.sql.dcb import COMPONENT, READ_COLUMNS, selection, sequenced_row

if TYPE_CHECKING:
    from eventsignal.stores.postgres.store import PostgresStore

_APPEND = PreparedCall(
    "eventsignal_dcb_append",
    "SELECT failed, positions FROM eventsignal_dcb_append($1::int8, $2::text, $3::int8[],"
    " $4::int4[], $5::int4[], $6::int4[], $7::int4[], $8::int4[], $9::text[], $10::text[],"
    " $11::text[], $12::text[], $13::int4[], $14::int4[], $15::int4[], $16::uuid[], $17::text[],"
    " $18::text[], $19::timestamptz[], $20::bytea[], $21::text[], $22::int4[], $23::text[])",
)
_METADATA = "CASE WHEN e.metadata = '{}' THEN NULL ELSE e.metadata::text END"
_encode_json = msgspec.json.Encoder().encode


class _Request:
    __slots__ = ("condition", "events", "shapes")

    def __init__(
        self, events: list[StoredEvent], batch: list[DcbEvent], condition: AppendCondition | None
    ) -> None:
        self.events = events
        self.condition = condition
        self.shapes = [(event.type, event.tags) for event in batch]  # what a condition sees


class _BatchIndex:
    """The events of a batch's requests so far, by tag and by type, so that a request finds
    the batch-mates before it whose events its condition selects without trying them all."""

    def __init__(self) -> None:
        self.requests: list[_Request] = []
        self.by_tag: dict[str, list[int]] = {}
        self.by_type: dict[str, list[int]] = {}

    def selected(self, request: _Request) -> list[int]:
        """The numbers (1-based) of the earlier requests whose events ``request`` selects."""
        condition = request.condition
        if condition is None or not self.requests:
            return []
        query = condition.fail_if_events_match
        candidates: set[int] = set()
        if query.everything:
            candidates.update(range(len(self.requests)))
        for item in query.items:
            if item.tags:
                candidates.update(self.by_tag.get(next(iter(item.tags)), ()))
            else:
                for type_ in item.types:
                    candidates.update(self.by_type.get(type_, ()))
        return [
            index + 1
            for index in sorted(candidates)
            if any(query.matches(t, tags) for t, tags in self.requests[index].shapes)
        ]

    def add(self, request: _Request) -> None:
        index = len(self.requests)
        self.requests.append(request)
        for type_, tags in request.shapes:
            self.by_type.setdefault(type_, []).append(index)
            for tag in tags:
                self.by_tag.setdefault(tag, []).append(index)


_Queued = tuple[_Request, "asyncio.Future[Sequence[int]]"]


class PostgresDcb:
    """Reads and appends by query over the log of one :class:`PostgresStore`."""

    def __init__(self, store: PostgresStore, max_batch: int) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._direct: asyncio.Future[None] | None = None  # an append committing on its own
        self._held: HeldConnection[Any] = HeldConnection()  # batches go one at a time
        self._alone_last = True  # the last batch had one request (see _alone)

    async def _ready(self) -> None:
        await ensure_component(self._store, COMPONENT, MIGRATIONS)

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        check_limit(limit)
        await self._ready()
        params: list[Any] = []

        def param(value: Any) -> str:
            params.append(value)
            return "%s"

        where = selection(query, after, param)
        sql = (
            f"SELECT {READ_COLUMNS}, {_METADATA} FROM eventsignal_events AS e WHERE {where}"
            " ORDER BY e.position"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        async with self._store._connection("reading by query") as conn:
            rows = await (await conn.execute(sql.encode(), params)).fetchall()
        return [
            sequenced_row(position, name, key, type_, data, {} if text is None else _meta(text))
            for position, name, key, type_, data, text in rows
        ]

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int:
        batch = checked_events(events)
        condition = checked_condition(condition)
        now = datetime.now(UTC)
        request = _Request([to_stored(event, 0, now) for event in batch], batch, condition)
        await self._ready()
        if self._store._pool is None:
            from eventsignal.stores.postgres.store import _not_open

            raise _not_open()
        if self._flusher is None and self._direct is None and self._alone_last:
            return await self._alone(request)
        future: asyncio.Future[Sequence[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._flusher is None and self._direct is None:
            self._flusher = asyncio.create_task(self._flush())
        positions = await future
        return positions[-1]

    async def _alone(self, request: _Request) -> int:
        """Commit ``request`` in the caller's task: with nothing in flight there is no batch to
        join, and the hop to a flusher task and back is a good part of one client's latency.
        Appends arriving meanwhile queue up and go together once this one is done.

        Only while the last batch was alone, too: callers woken by a batch append again in one
        turn of the event loop, and the first of them going alone would split the rest into a
        batch of their own, halving the batches of many clients."""
        self._direct = done = asyncio.get_running_loop().create_future()
        try:
            (outcome,) = await self._commit([request])
        finally:
            self._direct = None
            done.set_result(None)
            if self._queue and self._flusher is None:
                self._flusher = asyncio.create_task(self._flush())
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome[-1]

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await settle_batch(batch, self._commit)
        finally:
            self._flusher = None
            if self._queue:
                self._flusher = asyncio.create_task(self._flush())

    def let_go(self) -> None:
        """Give back the connection kept between batches, if idle (the store's connections
        are being replaced)."""
        self._held.let_go()

    async def close(self) -> None:
        """Wait for queued appends to be committed; give the writer's connection back."""
        while self._flusher is not None or self._direct is not None:
            if self._direct is not None:
                await asyncio.shield(self._direct)
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
        await self._held.close()

    async def _commit(self, requests: list[_Request]) -> list[Sequence[int] | BaseException]:
        store = self._store
        self._alone_last = len(requests) == 1
        after: list[int] = []
        conditions = _Conditions()
        index = _BatchIndex()
        dependents: list[int] = []
        dependencies: list[int] = []
        for number, request in enumerate(requests, start=1):
            condition = request.condition
            after.append(0 if condition is None or condition.after is None else condition.after)
            if condition is not None:
                conditions.add(number, condition.fail_if_events_match)
                for earlier in index.selected(request):
                    dependents.append(number)
                    dependencies.append(earlier)
            index.add(request)
        ev_requests: list[int] = []
        ids: list[Any] = []
        keys: list[str] = []
        names: list[str] = []
        times: list[datetime] = []
        data: list[bytes] = []
        metadata: list[str] = []
        tag_events: list[int] = []
        tag_values: list[str] = []
        for number, request in enumerate(requests, start=1):
            for event, (_, tags) in zip(request.events, request.shapes, strict=True):
                ev_requests.append(number)
                ids.append(event.id)
                keys.append(event.aggregate_id)
                names.append(event.name)
                times.append(event.timestamp)
                data.append(event.data)
                meta = event.metadata
                metadata.append(_encode_json(meta).decode() if meta else "{}")
                for tag in tags:  # also in the metadata, as JSON: no need to decode it
                    tag_events.append(len(ev_requests))
                    tag_values.append(tag)
        params = (
            int8_scalar(store._lock_key),
            store._channel.encode(),
            int8_array(after),
            *conditions.arrays(),
            int4_array(dependents),
            int4_array(dependencies),
            int4_array(ev_requests),
            uuid_array(ids),
            text_array(keys),
            text_array(names),
            timestamptz_array(times),
            bytea_array(data),
            text_array(metadata),
            int4_array(tag_events),
            text_array(tag_values),
        )
        unsure = "the events may or may not be stored, read them back by query"
        held = self._held
        async with store._held_connection(held, "appending events by query", unsure=unsure) as conn:
            failures, written = await _APPEND.run(conn, params)
        found = int8_values(failures)
        positions = cast(list[int], int8_values(written))
        store._transactions += 1
        outcomes: list[Sequence[int] | BaseException] = []
        offset = 0
        for request, failed in zip(requests, found, strict=True):
            if failed is not None:
                assert request.condition is not None
                outcomes.append(AppendConditionFailed(request.condition, failed))
                continue
            count = len(request.events)
            outcomes.append(positions[offset : offset + count])
            offset += count
            store._appends += 1
            store._events += count
        for number, failed in enumerate(found):
            if failed is not None and failed < 0:  # failed by the batch-mate it names
                condition = requests[number].condition
                assert condition is not None
                winner = outcomes[-failed - 1]
                assert not isinstance(winner, BaseException)
                outcomes[number] = AppendConditionFailed(condition, winner[0])
        if positions and store._watch is not None:
            store._watch.advance(positions[-1])
        return outcomes


class _Conditions:
    """The query items of a batch's conditions, flattened into the arrays the function takes."""

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.tags_from: list[int] = []
        self.tags_to: list[int] = []
        self.types_from: list[int] = []
        self.types_to: list[int] = []
        self.tags: list[str] = []
        self.names: list[str | None] = []
        self.ids: list[str | None] = []
        self.types: list[str] = []

    def add(self, request: int, query: Query) -> None:
        for item in query.items or (None,):  # Query.all(): one item without tags or types
            self.requests.append(request)
            self.tags_from.append(len(self.tags) + 1)
            self.types_from.append(len(self.types) + 1)
            if item is not None:
                for tag in item.tags:
                    aggregate = split_tag(tag)
                    self.tags.append(tag)
                    self.names.append(None if aggregate is None else aggregate[0])
                    self.ids.append(None if aggregate is None else aggregate[1])
                self.types.extend(item.types)
            self.tags_to.append(len(self.tags))
            self.types_to.append(len(self.types))

    def arrays(self) -> tuple[Any, ...]:
        return (
            int4_array(self.requests),
            int4_array(self.tags_from),
            int4_array(self.tags_to),
            int4_array(self.types_from),
            int4_array(self.types_to),
            text_array(self.tags),
            text_array(self.names),
            text_array(self.ids),
            text_array(self.types),
        )


def _meta(text: str) -> dict[str, str]:
    return read_metadata(text)[0]
