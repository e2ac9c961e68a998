"""The DCB view of a :class:`NatsStore`, on the server as it is (no index of tags).

A DCB append is one message (all its events, so it is atomic) on the subject
``<stream>.~.<first tag>``: an aggregate type token of ``~`` decodes to the empty name that marks
events without an aggregate. Its tags travel in the events' metadata, like on every store.

The condition is checked exactly, against everything stored, without an index: the view reads
the stream's last sequence, reads the events after ``condition.after`` up to it and fails if one
matches, then publishes with ``Nats-Expected-Last-Sequence`` set to that sequence. The server
refuses the message if anything at all was stored meanwhile; then the view reads only what was
added and tries again, so a writer whose boundary nobody touched never fails, it only retries.
Conflicting writers can therefore never both be stored. The price: every conditional append
scans the events after its ``after`` (cheap when ``after`` is recent, as a decision's is when
its boundary has events), and under a steady stream of other writes an append may retry many
times; it gives up with :class:`~eventsignal.StoreUnavailable` after ``MAX_TRIES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventsignal.domain.dcb import AppendCondition, DcbEvent, Query, SequencedEvent
from eventsignal.domain.errors import (
    AppendConditionFailed,
    ConfigurationError,
    StoreUnavailable,
)
from eventsignal.stores.dcb import (
    check_limit,
    checked_condition,
    checked_events,
    matches,
    sequenced,
    to_stored,
)
from eventsignal.stores.nats.wire import (
    CONFLICTS,
    COUNT,
    CREATED,
    EXPECTED_LAST_SEQUENCE,
    SLOTS,
    VERSION,
    decode_ack,
    encode_events,
    encode_token,
    head_of,
    message_size,
    positions_of,
)

if TYPE_CHECKING:
    from eventsignal.stores.nats.store import NatsStore

MAX_TRIES = 1000
_PAGE = 1000


class NatsDcb:
    """Reads and appends by query over the stream of one :class:`NatsStore`."""

    __slots__ = ("_store",)

    def __init__(self, store: NatsStore) -> None:
        self._store = store

    async def read(
        self, query: Query, *, after: int | None = None, limit: int | None = None
    ) -> Sequence[SequencedEvent]:
        check_limit(limit)
        found: list[SequencedEvent] = []
        if limit == 0:
            return found
        position = after or 0
        through = await self._store.head_position()  # one state: what was stored by now
        while position < through:
            page = await self._store.read_all(position, _PAGE)
            if not page:
                break
            for stored in page:
                if stored.position > through:
                    return found
                if matches(query, stored):
                    found.append(sequenced(stored))
                    if limit is not None and len(found) >= limit:
                        return found
            position = page[-1].position
        return found

    async def append(
        self, events: Sequence[DcbEvent] | DcbEvent, condition: AppendCondition | None = None
    ) -> int:
        batch = checked_events(events)
        condition = checked_condition(condition)
        if len(batch) > SLOTS:
            raise ConfigurationError(f"one append holds at most {SLOTS} events, not {len(batch)}")
        store = self._store
        now = datetime.now(UTC)
        stored = [to_stored(event, 0, now) for event in batch]
        stream = store.stream
        subject = f"{stream}.~.{encode_token(stored[0].aggregate_id) if batch[0].tags else '~'}"
        body = encode_events(stored)
        headers = {VERSION: str(len(stored)), COUNT: str(len(stored)), CREATED: now.isoformat()}
        checked = (condition.after or 0) if condition is not None else 0
        for _ in range(MAX_TRIES):
            if condition is not None:
                last = await store._last_sequence()
                await self._check(condition, checked, head_of(last))
                checked = head_of(last)
                headers[EXPECTED_LAST_SEQUENCE] = str(last)
            limit = store._client().max_payload
            if message_size(headers, body) > limit:
                raise ConfigurationError(
                    f"the events of this append take {message_size(headers, body):,} bytes, "
                    f"NATS accepts at most {limit:,} in one message"
                )
            reply = await store._request(subject, body, headers, writing=True)
            ack = decode_ack(reply.data)
            if ack.error is None:
                store._acked = max(store._acked, ack.seq)
                store._counted(stored)
                store._seen(ack.seq)
                return positions_of(ack.seq, len(stored))[-1]
            if ack.error.err_code not in CONFLICTS:
                raise StoreUnavailable(f"JetStream refused the events of {subject}: {ack.error}")
            # Something was stored since the check: check what was added, then try again.
        raise StoreUnavailable(
            f"stream {stream!r}: {MAX_TRIES} tries to append by condition each found other "
            "writes between the check and the write; nothing was stored"
        )

    async def _check(self, condition: AppendCondition, after: int, through: int) -> None:
        """Fail if an event that ``condition`` selects sits after ``after`` (up to ``through``)."""
        query = condition.fail_if_events_match
        position = after
        while position < through:
            page = await self._store.read_all(position, _PAGE)
            if not page:
                return
            for stored in page:
                if matches(query, stored):
                    raise AppendConditionFailed(condition, stored.position)
            position = page[-1].position
