"""Subject keys (see :mod:`eventsignal.stores.subject_keys`) in a SQL event store's database.

One component, ``subject_keys``, with its own migrations, shared by SQLite and PostgreSQL: a
table of keys (a forgotten subject keeps its row, with no key and the moment it was forgotten)
and a table of the aggregates whose events named each subject.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from eventsignal.stores.sql import SQLStore, ensure_component, for_dialect
from eventsignal.stores.subject_keys import Forgetting, ForgottenSubject, SubjectUse

COMPONENT = "subject_keys"

_MIGRATIONS = {
    "sqlite": [
        [
            """CREATE TABLE IF NOT EXISTS eventsignal_subject_keys (
                digest TEXT PRIMARY KEY,
                key BLOB,
                created_at TEXT NOT NULL,
                forgotten_at TEXT
            )""",
            """CREATE TABLE IF NOT EXISTS eventsignal_subject_uses (
                digest TEXT NOT NULL,
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                PRIMARY KEY (digest, aggregate_name, aggregate_id)
            )""",
        ]
    ],
    "postgres": [
        [
            """CREATE TABLE IF NOT EXISTS eventsignal_subject_keys (
                digest TEXT PRIMARY KEY,
                key BYTEA,
                created_at TIMESTAMPTZ NOT NULL,
                forgotten_at TIMESTAMPTZ
            )""",
            """CREATE TABLE IF NOT EXISTS eventsignal_subject_uses (
                digest TEXT NOT NULL,
                aggregate_name TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                PRIMARY KEY (digest, aggregate_name, aggregate_id)
            )""",
        ]
    ],
}

_ADD = """INSERT INTO eventsignal_subject_keys (digest, key, created_at) VALUES (?, ?, ?)
    ON CONFLICT (digest) DO NOTHING"""
_USE = """INSERT INTO eventsignal_subject_uses (digest, aggregate_name, aggregate_id)
    VALUES (?, ?, ?) ON CONFLICT DO NOTHING"""
_LOAD = "SELECT key FROM eventsignal_subject_keys WHERE digest = ?"
_FORGET = """UPDATE eventsignal_subject_keys SET key = NULL, forgotten_at = ?
    WHERE digest = ? AND forgotten_at IS NULL"""
_RECORD = """INSERT INTO eventsignal_subject_keys (digest, key, created_at, forgotten_at)
    VALUES (?, NULL, ?, ?) ON CONFLICT (digest) DO NOTHING"""
_DROP = "DELETE FROM eventsignal_subject_keys WHERE digest = ? AND forgotten_at IS NULL"
_WHEN = "SELECT forgotten_at FROM eventsignal_subject_keys WHERE digest = ?"
_USES = """SELECT aggregate_name, aggregate_id FROM eventsignal_subject_uses WHERE digest = ?
    ORDER BY aggregate_name, aggregate_id"""
_FORGOTTEN = """SELECT digest, forgotten_at FROM eventsignal_subject_keys
    WHERE forgotten_at IS NOT NULL ORDER BY forgotten_at, digest"""
_FORGOTTEN_SINCE = """SELECT digest, forgotten_at FROM eventsignal_subject_keys
    WHERE forgotten_at > ? ORDER BY forgotten_at, digest"""


class SQLSubjectKeyStore:
    """A :class:`~eventsignal.stores.subject_keys.SubjectKeyStore` on a SQL event store."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self._dialect = store.dialect
        self._sql = {
            name: for_dialect(sql, store.dialect)
            for name, sql in {
                "add": _ADD,
                "use": _USE,
                "load": _LOAD,
                "forget": _FORGET,
                "record": _RECORD,
                "when": _WHEN,
                "drop": _DROP,
                "uses": _USES,
                "forgotten": _FORGOTTEN,
                "since": _FORGOTTEN_SINCE,
            }.items()
        }

    def _time(self, moment: datetime) -> object:
        return moment.isoformat() if self._dialect == "sqlite" else moment

    @staticmethod
    def _read_time(value: Any) -> datetime:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    async def prepare_subject_keys(self) -> None:
        """Create or upgrade the key tables (once per store in this process)."""
        await ensure_component(self.store, COMPONENT, _MIGRATIONS[self._dialect])

    async def load_subject_keys(self, digests: Collection[str]) -> dict[str, bytes | None]:
        await self.prepare_subject_keys()
        found: dict[str, bytes | None] = {}
        # A read path of its own, where the store has one: loads never queue behind writes.
        async with self.store.read_transaction() as tx:
            for digest in digests:
                row = await tx.fetchone(self._sql["load"], (digest,))
                if row is not None:
                    found[digest] = None if row[0] is None else bytes(row[0])
        return found

    async def add_subject_keys(
        self, keys: Mapping[str, bytes], uses: Collection[SubjectUse]
    ) -> dict[str, bytes | None]:
        await self.prepare_subject_keys()
        now = self._time(datetime.now(UTC))
        found: dict[str, bytes | None] = {}
        async with self.store.transaction() as tx:
            for digest, key in keys.items():
                await tx.execute(self._sql["add"], (digest, key, now))
            for use in uses:
                await tx.execute(self._sql["use"], use)
            for digest in keys:
                row = await tx.fetchone(self._sql["load"], (digest,))
                found[digest] = None if row is None or row[0] is None else bytes(row[0])
        return found

    async def forget_subject_key(self, digest: str, at: datetime) -> Forgetting:
        await self.prepare_subject_keys()
        when = self._time(at)
        async with self.store.transaction() as tx:
            destroyed = await tx.execute(self._sql["forget"], (when, digest)) > 0
            if not destroyed:
                await tx.execute(self._sql["record"], (digest, when, when))
            row = await tx.fetchone(self._sql["when"], (digest,))
            uses = await tx.fetchall(self._sql["uses"], (digest,))
        assert row is not None
        return Forgetting(
            digest=digest,
            forgotten_at=self._read_time(row[0]),
            destroyed=destroyed,
            aggregates=tuple((name, aggregate_id) for name, aggregate_id in uses),
        )

    async def drop_subject_key(self, digest: str) -> None:
        await self.prepare_subject_keys()
        async with self.store.transaction() as tx:
            await tx.execute(self._sql["drop"], (digest,))

    async def subject_uses(self, digest: str) -> Sequence[tuple[str, str]]:
        await self.prepare_subject_keys()
        async with self.store.read_transaction() as tx:
            rows = await tx.fetchall(self._sql["uses"], (digest,))
        return [(name, aggregate_id) for name, aggregate_id in rows]

    async def forgotten_subjects(self, since: datetime | None = None) -> list[ForgottenSubject]:
        await self.prepare_subject_keys()
        async with self.store.read_transaction() as tx:
            if since is None:
                rows = await tx.fetchall(self._sql["forgotten"])
            else:
                rows = await tx.fetchall(self._sql["since"], (self._time(since),))
        return [
            ForgottenSubject(digest=digest, forgotten_at=self._read_time(at)) for digest, at in rows
        ]
