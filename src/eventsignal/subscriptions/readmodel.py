"""A document store for projections: key -> JSON document, with the position it reflects.

Documents live in the store's database (table ``eventsignal_documents``, JSONB on PostgreSQL) and
are written in the subscription's transaction, so a projection built with them is exactly-once.
Writes are staged in the :class:`Transaction` and sent together before the checkpoint moves.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from eventsignal.domain.identity import validate_name
from eventsignal.stores.base import EventStore
from eventsignal.subscriptions.checkpoints import SQL, Checkpoints
from eventsignal.subscriptions.transaction import Storage, Transaction, storage_for

D = TypeVar("D")

_SELECT = "SELECT {doc}, position FROM eventsignal_documents WHERE model = ? AND key = ?"
_ALL = "SELECT key, {doc}, position FROM eventsignal_documents WHERE model = ? ORDER BY key"
_UPSERT = (
    "INSERT INTO eventsignal_documents (model, key, document, position) VALUES (?, ?, {param}, ?)"
    " ON CONFLICT (model, key) DO UPDATE SET document = excluded.document,"
    " position = excluded.position"
)
_DELETE = "DELETE FROM eventsignal_documents WHERE model = ? AND key = ?"
_CLEAR = "DELETE FROM eventsignal_documents WHERE model = ?"


def _statement(tx: Transaction, statement: str) -> str:
    postgres = tx.dialect == "postgres"
    return _TRANSLATED[tx.dialect](
        statement.format(
            doc="document::text" if postgres else "document",
            param="?::jsonb" if postgres else "?",
        )
    )


_TRANSLATED = {"sqlite": SQL("sqlite"), "postgres": SQL("postgres")}


async def _send_staged(tx: Transaction) -> None:
    """Write every staged document change of ``tx`` in at most two statements."""
    staged, tx.staged = tx.staged, {}
    puts = [(m, k, text, p) for (m, k), (text, p) in staged.items() if text is not None]
    deletes = [(m, k) for (m, k), (text, _) in staged.items() if text is None]
    if puts:
        await tx.raw.executemany(_statement(tx, _UPSERT), puts)
    if deletes:
        await tx.raw.executemany(_statement(tx, _DELETE), deletes)


class Document(msgspec.Struct, Generic[D], frozen=True):
    """A stored document and the global position of the last event it reflects."""

    key: str
    value: D
    position: int


class ReadModel(Generic[D]):
    """Named documents of one type (``dict`` unless told), kept by a projection.

    Inside a handler, pass its ``tx``: ``await totals.put(tx, cart_id, doc, event.position)``.
    Outside, read through the store: ``await totals.read(store, cart_id)``.
    """

    def __init__(self, name: str, document_type: type[D] | Any = dict) -> None:
        self.name = validate_name(name)
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder(document_type).decode

    def _q(self, tx: Transaction, statement: str) -> str:
        return _statement(tx, statement)

    def _value(self, raw: str | bytes) -> D:
        return self._decode(raw)  # type: ignore[no-any-return]

    async def document(self, tx: Transaction, key: str) -> Document[D] | None:
        staged = tx.staged.get((self.name, key))
        if staged is not None:
            text, position = staged
            return None if text is None else Document(key, self._value(text), position)
        row = await tx.raw.fetchone(self._q(tx, _SELECT), (self.name, key))
        return None if row is None else Document(key, self._value(row[0]), int(row[1]))

    async def get(self, tx: Transaction, key: str) -> D | None:
        found = await self.document(tx, key)
        return None if found is None else found.value

    async def put(self, tx: Transaction, key: str, value: D, position: int) -> None:
        """Store ``value`` under ``key`` (staged; sent when the batch commits)."""
        tx.staged[(self.name, key)] = (self._encode(value).decode(), position)
        tx.on_flush(_send_staged)

    async def delete(self, tx: Transaction, key: str) -> None:
        tx.staged[(self.name, key)] = (None, 0)
        tx.on_flush(_send_staged)

    async def documents(self, tx: Transaction) -> list[Document[D]]:
        await tx.flush()
        rows = await tx.raw.fetchall(self._q(tx, _ALL), (self.name,))
        return [Document(r[0], self._value(r[1]), int(r[2])) for r in rows]

    async def clear(self, tx: Transaction) -> None:
        """Remove every document (a rebuild starts from nothing)."""
        for staged in [k for k in tx.staged if k[0] == self.name]:
            del tx.staged[staged]
        await tx.raw.execute(self._q(tx, _CLEAR), (self.name,))

    # Reading from outside a handler

    async def _outside(self, store: EventStore, storage: Storage | None) -> Checkpoints:
        db = Checkpoints(storage if storage is not None else storage_for(store))
        await db.setup()
        return db

    async def read(
        self, store: EventStore, key: str, *, checkpoints: Storage | None = None
    ) -> D | None:
        """The document under ``key`` as last committed."""
        db = await self._outside(store, checkpoints)
        async with db.reading() as raw:
            return await self.get(Transaction(raw, db.dialect), key)

    async def read_all(
        self, store: EventStore, *, checkpoints: Storage | None = None
    ) -> list[Document[D]]:
        """Every document, by key, as last committed."""
        db = await self._outside(store, checkpoints)
        async with db.reading() as raw:
            return await self.documents(Transaction(raw, db.dialect))
