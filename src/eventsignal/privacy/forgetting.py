"""Forgetting a data subject: destroy its key, drop what holds its plaintext, keep a record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventsignal.privacy.keychain import keychain_for, subject_key_store_for, tenant_of
from eventsignal.privacy.settings import DEFAULT, Privacy
from eventsignal.privacy.snapshots import snapshot_digest
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores.base import EventStore, SnapshotStore
from eventsignal.stores.subject_keys import Forgetting, ForgottenSubject


async def forget(
    store: EventStore,
    subject: object,
    *,
    privacy: Privacy = DEFAULT,
    snapshots: SnapshotStore | None = None,
) -> Forgetting:
    """Forget ``subject`` in ``store``: destroy its data key, record when (by digest only), and
    drop the snapshots of the aggregates whose events named it.

    From then on every reader of the store sees the redacted values of the subject's personal
    fields. Live aggregates elsewhere are not reached: :meth:`eventsignal.Signal.forget` also
    evicts them from its own pool, and other processes read the key store again within their
    ``key_ttl``.
    """
    keys = subject_key_store_for(store)
    digest = privacy.digest(subject, tenant_of(store))
    now = datetime.now(UTC)
    done = await keys.forget_subject_key(digest, now)
    chain = keychain_for(store)
    chain.forget(digest)
    for aggregate_name, aggregate_id in done.aggregates:
        # The snapshots of those aggregates were sealed under keys of their own: gone too.
        sealed = snapshot_digest(privacy, aggregate_name, aggregate_id)
        await keys.drop_subject_key(sealed)
        chain.drop(sealed)
    await drop_snapshots(store, done.aggregates, snapshots)
    return done


async def drop_snapshots(
    store: EventStore,
    aggregates: tuple[tuple[str, str], ...],
    snapshots: SnapshotStore | None = None,
) -> None:
    """Delete the snapshots of these aggregates (they may hold forgotten plaintext)."""
    target: Any = snapshots if snapshots is not None else snapshot_store_for(store)
    delete = getattr(target, "delete_snapshot", None)
    if delete is None:
        return
    for aggregate_name, aggregate_id in aggregates:
        await delete(aggregate_name, aggregate_id)


async def subject_aggregates(
    store: EventStore, subject: object, *, privacy: Privacy = DEFAULT
) -> list[tuple[str, str]]:
    """The aggregates (type, id) whose events named ``subject``: what forgetting would touch."""
    digest = privacy.digest(subject, tenant_of(store))
    return list(await subject_key_store_for(store).subject_uses(digest))


async def forgotten_subjects(
    store: EventStore, since: datetime | None = None
) -> list[ForgottenSubject]:
    """The record of forgettings in ``store`` (digests and moments, never subjects)."""
    return await subject_key_store_for(store).forgotten_subjects(since)
