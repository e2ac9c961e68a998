"""Payload rewrites (:class:`~eventsignal.stores.rewriting.PayloadRewrite`) in a SQL store.

One short transaction per call: an ``UPDATE`` of ``data`` per change, matched on the position
and the payload expected, in position order (two runs at once lock rows in the same order and
cannot deadlock). No lock that appends take is needed: appends only insert rows, and nothing
but the payload of existing rows changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from eventsignal.stores.rewriting import PayloadChange
from eventsignal.stores.sql.contract import Dialect, SQLTransaction, for_dialect

_REWRITE = "UPDATE eventsignal_events SET data = ? WHERE position = ? AND data = ?"


class SQLPayloadRewrite:
    """The :class:`~eventsignal.stores.rewriting.PayloadRewrite` method of a SQL store."""

    if TYPE_CHECKING:
        dialect: Dialect

        def transaction(self) -> AbstractAsyncContextManager[SQLTransaction]: ...

    async def rewrite_payloads(self, changes: Sequence[PayloadChange]) -> int:
        if not changes:
            return 0
        statement = for_dialect(_REWRITE, self.dialect)
        done = 0
        async with self.transaction() as tx:
            for change in sorted(changes, key=_position):
                done += await tx.execute(statement, (change.new, change.position, change.old))
        return done


def _position(change: PayloadChange) -> int:
    return change.position
