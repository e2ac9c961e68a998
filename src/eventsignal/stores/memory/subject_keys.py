"""Subject keys (see :mod:`eventsignal.stores.subject_keys`) in a MemoryStore's dictionaries."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from eventsignal.stores.base import Snapshot
from eventsignal.stores.subject_keys import Forgetting, ForgottenSubject, SubjectUse


class MemorySubjectKeys:
    """The subject key store of a :class:`~eventsignal.stores.MemoryStore`; made on first use,
    so a store that never sees personal data carries nothing for it."""

    _snapshots: dict[tuple[str, str], Snapshot]
    _subject_keys: dict[str, bytes | None]
    _subject_uses: dict[str, dict[tuple[str, str], None]]
    _forgotten: dict[str, datetime]

    async def prepare_subject_keys(self) -> None:
        if not hasattr(self, "_subject_keys"):
            self._subject_keys = {}
            self._subject_uses = {}
            self._forgotten = {}

    async def load_subject_keys(self, digests: Collection[str]) -> dict[str, bytes | None]:
        await self.prepare_subject_keys()
        keys = self._subject_keys
        return {d: keys[d] for d in digests if d in keys}

    async def add_subject_keys(
        self, keys: Mapping[str, bytes], uses: Collection[SubjectUse]
    ) -> dict[str, bytes | None]:
        await self.prepare_subject_keys()
        stored = self._subject_keys
        for digest, key in keys.items():
            stored.setdefault(digest, key)
        for digest, name, aggregate_id in uses:
            self._subject_uses.setdefault(digest, {})[(name, aggregate_id)] = None
        return {d: stored[d] for d in keys}

    async def forget_subject_key(self, digest: str, at: datetime) -> Forgetting:
        await self.prepare_subject_keys()
        destroyed = self._subject_keys.get(digest) is not None
        self._subject_keys[digest] = None
        at = self._forgotten.setdefault(digest, at)
        return Forgetting(
            digest=digest,
            forgotten_at=at,
            destroyed=destroyed,
            aggregates=tuple(await self.subject_uses(digest)),
        )

    async def drop_subject_key(self, digest: str) -> None:
        await self.prepare_subject_keys()
        if self._subject_keys.get(digest) is not None:  # a forgotten subject's record stays
            del self._subject_keys[digest]

    async def subject_uses(self, digest: str) -> Sequence[tuple[str, str]]:
        await self.prepare_subject_keys()
        return list(self._subject_uses.get(digest, ()))

    async def forgotten_subjects(self, since: datetime | None = None) -> list[ForgottenSubject]:
        await self.prepare_subject_keys()
        found = [
            ForgottenSubject(digest=d, forgotten_at=at)
            for d, at in self._forgotten.items()
            if since is None or at > since
        ]
        return sorted(found, key=lambda f: f.forgotten_at)

    async def delete_snapshot(self, aggregate_name: str, aggregate_id: str) -> None:
        """Drop the aggregate's snapshot, if any (it may hold personal data now forgotten)."""
        self._snapshots.pop((aggregate_name, aggregate_id), None)
