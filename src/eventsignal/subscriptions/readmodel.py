"""A document store for projections: key -> JSON document, with the position it reflects.

Documents live with the subscription state in the store (on SQL stores, table
``eventsignal_documents``, JSONB on PostgreSQL) and are written in the subscription's
transaction, so a projection built with them is exactly-once, on every store. Writes are staged
in the :class:`Transaction` and stored together when the batch commits.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from eventsignal.domain.identity import validate_name
from eventsignal.stores.base import EventStore
from eventsignal.stores.subscription_state import StoredDocument, SubscriptionStore
from eventsignal.subscriptions.transaction import Transaction, state_store_for

D = TypeVar("D")


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

    def _document(self, stored: StoredDocument) -> Document[D]:
        return Document(stored.key, self._decode(stored.data), stored.position)

    async def document(self, tx: Transaction, key: str) -> Document[D] | None:
        """The document under ``key`` with its position, as this transaction sees it."""
        if (self.name, key) in tx.staged:
            staged = tx.staged[(self.name, key)]
            return None if staged is None else self._document(staged)
        found = await tx.state.document(self.name, key)
        return None if found is None else self._document(found)

    async def get(self, tx: Transaction, key: str) -> D | None:
        """The value under ``key`` as this transaction sees it, or ``None``."""
        found = await self.document(tx, key)
        return None if found is None else found.value

    async def put(self, tx: Transaction, key: str, value: D, position: int) -> None:
        """Store ``value`` under ``key`` (staged; stored when the batch commits)."""
        tx.staged[(self.name, key)] = StoredDocument(key, self._encode(value), position)

    async def delete(self, tx: Transaction, key: str) -> None:
        """Remove the document under ``key`` when the transaction commits."""
        tx.staged[(self.name, key)] = None

    async def documents(self, tx: Transaction) -> list[Document[D]]:
        """Every document, by key, as this transaction sees it."""
        await tx.flush()
        return [self._document(d) for d in await tx.state.documents(self.name)]

    async def clear(self, tx: Transaction) -> None:
        """Remove every document (a rebuild starts from nothing)."""
        for staged in [k for k in tx.staged if k[0] == self.name]:
            del tx.staged[staged]
        await tx.state.clear_documents(self.name)

    # Reading from outside a handler

    async def read(
        self, store: EventStore, key: str, *, checkpoints: SubscriptionStore | None = None
    ) -> D | None:
        """The document under ``key`` as last committed."""
        state = state_store_for(store, checkpoints)
        await state.setup_subscriptions()
        async with state.subscription_reads() as reads:
            found = await reads.document(self.name, key)
        return None if found is None else self._document(found).value

    async def read_all(
        self, store: EventStore, *, checkpoints: SubscriptionStore | None = None
    ) -> list[Document[D]]:
        """Every document, by key, as last committed."""
        state = state_store_for(store, checkpoints)
        await state.setup_subscriptions()
        async with state.subscription_reads() as reads:
            return [self._document(d) for d in await reads.documents(self.name)]
