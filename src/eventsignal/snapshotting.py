"""Taking and restoring snapshots for one aggregate type.

A snapshot is a shortcut, never the truth: it is taken after the command's reply, in the
background, and one that cannot be used (another schema version, undecodable) is skipped in
favour of the events.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.serialization import StateSerializer, Transcoder
from eventsignal.stores.base import Snapshot, SnapshotStore
from eventsignal.stores.snapshots import snapshot_store_for
from eventsignal.telemetry import SnapshotFailed, SnapshotIgnored, SnapshotTaken, TelemetryHook

S = TypeVar("S")

__all__ = ["Snapshotter", "snapshot_store_for"]


class Snapshotter(Generic[S]):
    """Decides when to snapshot, takes snapshots in the background, restores them."""

    def __init__(
        self,
        aggregate_name: str,
        policy: SnapshotPolicy,
        store: SnapshotStore,
        state_type: type[Any],
        transcoder: Transcoder | None,
        telemetry: TelemetryHook | None,
        sealer: Any = None,
    ) -> None:
        self.aggregate_name = aggregate_name
        # Events with personal fields: snapshots are sealed (eventsignal.privacy.snapshots).
        self._sealer = sealer
        self.policy = policy
        self.store = store
        self._serializer = StateSerializer(state_type, transcoder)
        self._telemetry = telemetry
        self._pending: set[asyncio.Task[None]] = set()

    def scoped(self, store: SnapshotStore) -> Snapshotter[S]:
        """This snapshotter writing to another snapshot store (a tenant's view), sharing the
        snapshots under way, so closing either waits for both."""
        twin = copy.copy(self)
        twin.store = store
        return twin

    async def start(self) -> None:
        """Let the snapshot store create its tables before the first rebuild needs them."""
        prepare = getattr(self.store, "prepare", None)
        if prepare is not None:
            await prepare()

    def after_command(self, aggregate_id: str, state: S, previous: int, version: int) -> None:
        if self.policy.due(state, previous, version):
            task = asyncio.create_task(self.take(aggregate_id, state, version))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def take(self, aggregate_id: str, state: S, version: int) -> None:
        try:
            data: bytes | None = self._serializer.encode(state)
            if self._sealer is not None:
                data = await self._sealer.seal(aggregate_id, data)
                if data is None:
                    return  # its key was destroyed with a forgotten subject: no snapshots
            assert data is not None
            snapshot = Snapshot(
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                schema_version=self.policy.schema_version,
                state=data,
                taken_at=datetime.now(UTC),
            )
            await self.store.save_snapshot(snapshot)
        except Exception as exc:
            self._report(
                SnapshotFailed(
                    aggregate_name=self.aggregate_name,
                    aggregate_id=aggregate_id,
                    version=version,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
        else:
            self._report(
                SnapshotTaken(
                    aggregate_name=self.aggregate_name, aggregate_id=aggregate_id, version=version
                )
            )

    async def restore(self, aggregate_id: str) -> tuple[S, int] | None:
        """The state and version of the latest usable snapshot, or ``None``."""
        snapshot = await self.store.load_snapshot(self.aggregate_name, aggregate_id)
        if snapshot is None:
            return None
        if snapshot.schema_version != self.policy.schema_version:
            reason = (
                f"schema version {snapshot.schema_version}, expected {self.policy.schema_version}"
            )
        else:
            try:
                data: bytes | None = snapshot.state
                if self._sealer is not None:
                    data = await self._sealer.open(aggregate_id, snapshot.state)
                if data is not None:
                    return self._serializer.decode(data), snapshot.version
                reason = "its key was destroyed (a subject of it was forgotten)"
            except Exception as exc:
                reason = f"cannot be decoded: {type(exc).__name__}: {exc}"
        self._report(
            SnapshotIgnored(
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=snapshot.version,
                reason=reason,
            )
        )
        return None

    async def close(self) -> None:
        """Wait for snapshots being taken."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _report(self, report: Any) -> None:
        if self._telemetry is not None:
            self._telemetry(report)
