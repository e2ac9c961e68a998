"""The keys of data subjects, kept in the same store as the events they unlock.

Each data subject (a customer, a user) has one random data key; the personal fields of events
about that subject are encrypted under it (see :mod:`eventsignal.privacy`). Forgetting the
subject destroys the key, which leaves those values unreadable everywhere the events went:
backups of the key table aside, there is nothing left to erase in the append-only log.

Subjects are known here only by a one-way digest of their id, never by the id itself. A store
also remembers which aggregates used each subject's key (so forgetting can find the snapshots
that hold the plaintext) and, for each subject forgotten, when.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import msgspec

SubjectUse = tuple[str, str, str]
"""A subject's digest, and the aggregate type and id of an event that named the subject."""


class Forgetting(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`SubjectKeyStore.forget_subject_key` did.

    ``destroyed`` is false when the subject had no key (never written, or forgotten before);
    ``aggregates`` are those whose events named the subject, as (type, id) pairs.
    """

    digest: str
    forgotten_at: datetime
    destroyed: bool
    aggregates: tuple[tuple[str, str], ...]


class ForgottenSubject(msgspec.Struct, frozen=True, kw_only=True):
    """The record a forgetting leaves: when, and the subject's digest only."""

    digest: str
    forgotten_at: datetime


@runtime_checkable
class SubjectKeyStore(Protocol):
    """Data keys by subject digest. A key value of ``None`` is a subject forgotten."""

    async def prepare_subject_keys(self) -> None:
        """Create the key table or bucket if it is missing."""
        ...

    async def load_subject_keys(self, digests: Collection[str]) -> dict[str, bytes | None]:
        """The keys of those subjects known to the store (``None``: forgotten)."""
        ...

    async def add_subject_keys(
        self, keys: Mapping[str, bytes], uses: Collection[SubjectUse]
    ) -> dict[str, bytes | None]:
        """Keep each key unless its subject has one already (or was forgotten), record the
        uses, and return the keys that are now stored: a concurrent writer's key wins over
        this one, and a forgotten subject stays forgotten (``None``)."""
        ...

    async def forget_subject_key(self, digest: str, at: datetime) -> Forgetting:
        """Destroy the subject's key and record the forgetting (once: a second call keeps the
        first moment)."""
        ...

    async def drop_subject_key(self, digest: str) -> None:
        """Delete a key without recording anything (for keys that are no subject's, like those
        of sealed snapshots): a later :meth:`add_subject_keys` may store a new one."""
        ...

    async def subject_uses(self, digest: str) -> Sequence[tuple[str, str]]:
        """The aggregates (type, id) whose events named the subject."""
        ...

    async def forgotten_subjects(self, since: datetime | None = None) -> list[ForgottenSubject]:
        """The subjects forgotten (after ``since``), oldest first."""
        ...
