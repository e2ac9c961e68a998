"""Key rotation: re-encrypting stored payloads under the key ring's current key.

Adding a key to the ring (``KeyRing.add``) makes new payloads use it; old ones stay under the
key they name, readable while that key stays in the ring. :func:`reencrypt` upgrades them, so
the old key can then leave the ring: it walks the log in position order, one page at a time,
decodes each payload under whichever key it names and encodes it again under the current key,
bound to the same row (the context the serializer gives), and writes each page back in one
compare-and-set step (:class:`~eventsignal.stores.rewriting.PayloadRewrite`); then the same
for archived streams in cold storage.

It is safe while commands run: they write new events under the current key already, and a
rewrite only replaces the payload of events that exist, never racing an append. It skips
payloads under the current key, so it is idempotent, and ``after_position`` resumes it where an
interrupted run stopped (the report says where). Snapshots are caches: one encrypted under
another key is dropped, not rewritten, and the next load rebuilds it from the events.

:func:`key_census` counts payloads per key id without any key (the id is in each payload).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from eventsignal.codecs.chain import Chain
from eventsignal.domain.errors import ConfigurationError
from eventsignal.serialization import row_context
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores.base import EventStore, SnapshotStore, StoredEvent
from eventsignal.stores.lifecycle import DELETION_EVENT
from eventsignal.stores.rewriting import PayloadChange, PayloadRewrite, StoredPayload, rewriter_of

#: How many events one page reads and rewrites (one short write transaction per page).
DEFAULT_PAGE = 500

#: The census's name for payloads that name no key (plaintext, or not written by AES-GCM).
PLAINTEXT = "(not encrypted)"

_FORMAT = 1  # the first byte of an AES-GCM payload (eventsignal.codecs.aes.FORMAT)


class Reencryption(msgspec.Struct, kw_only=True):
    """What a :func:`reencrypt` run found and did.

    ``events`` is how many payloads it read; ``by_key`` counts them per key id
    (:data:`PLAINTEXT` for none); ``rewritten`` were re-encrypted (with ``dry_run``: would be);
    ``current`` were under the current key already; ``changed`` were rewritten, moved or
    removed by someone else between the read and the write (another run, an archive: run
    again); ``unreadable`` could not be decoded (their positions, the first 100, in
    ``unreadable_positions``); ``snapshots_dropped`` snapshots under another key were dropped.
    ``archived`` is how many of the events read were in cold storage (archived streams; they
    are read after the log, every run). ``last_position`` is where a new run may resume
    (``after_position``) in the log.
    """

    key: str
    dry_run: bool = False
    events: int = 0
    archived: int = 0
    by_key: dict[str, int] = msgspec.field(default_factory=dict)
    rewritten: int = 0
    current: int = 0
    changed: int = 0
    unreadable: int = 0
    unreadable_positions: list[int] = msgspec.field(default_factory=list)
    snapshots_dropped: int = 0
    last_position: int = 0

    @property
    def done(self) -> bool:
        """Whether every payload read is now under the current key."""
        return self.unreadable == 0 and self.changed == 0


class _Layers:
    """The AES-GCM layer of a codec (alone or in a chain) and the layers stored outside it."""

    def __init__(self, codec: Any) -> None:
        from eventsignal.codecs.aes import AesGcm

        layers = list(codec.codecs) if isinstance(codec, Chain) else [codec]
        found = [i for i, layer in enumerate(layers) if isinstance(layer, AesGcm)]
        if not found:
            raise ConfigurationError(
                f"{type(codec).__name__} holds no AesGcm codec: there is no key to rotate"
            )
        self.aes: AesGcm = layers[found[-1]]
        self.outer = layers[found[-1] + 1 :]

    @property
    def current(self) -> str:
        return self.aes.keys.current

    def peel(self, data: bytes, context: bytes) -> bytes:
        """The AES-GCM payload inside the layers stored outside it."""
        for layer in reversed(self.outer):
            data = layer.decode(data, context) if _binds(layer) else layer.decode(data)
        return data

    def wrap(self, data: bytes, context: bytes) -> bytes:
        for layer in self.outer:
            data = layer.encode(data, context) if _binds(layer) else layer.encode(data)
        return data


def _binds(codec: Any) -> bool:
    return bool(getattr(codec, "binds_context", False))


def key_id_of(data: bytes) -> str | None:
    """The id of the key an AES-GCM payload names, without decrypting it (``None``: no key)."""
    if len(data) < 2 or data[0] != _FORMAT or len(data) < 2 + data[1]:
        return None
    return data[2 : 2 + data[1]].decode("ascii", "replace")


def _context(event: StoredEvent | StoredPayload) -> bytes:
    return row_context(event.aggregate_name, event.aggregate_id, event.version, event.name)


async def reencrypt(
    store: EventStore,
    codec: Any,
    *,
    page: int = DEFAULT_PAGE,
    after_position: int = 0,
    dry_run: bool = False,
    snapshots: bool = True,
    snapshot_store: SnapshotStore | None = None,
    pause: float = 0.0,
    progress: Callable[[Reencryption], None] | None = None,
) -> Reencryption:
    """Re-encrypt every payload of ``store`` not under ``codec``'s current key; see the module.

    ``codec`` is the application's transcoder (an :class:`~eventsignal.codecs.AesGcm`, or a
    chain that holds one), its ring holding the old keys and the new current one. Layers inside
    the encryption (compression) are kept as they are. ``dry_run`` reads and decodes everything
    and writes nothing. ``snapshot_store`` is where the application keeps snapshots, when not
    in ``store`` (``snapshots=False`` leaves them alone). ``pause`` is how many seconds to wait
    after each page, to leave the database (and this process's event loop) to the commands.
    ``progress`` is called after each page.
    """
    if page < 1:
        raise ConfigurationError(f"page must be at least 1, not {page}")
    if pause < 0:
        raise ConfigurationError(f"pause must not be negative, not {pause}")
    layers = _Layers(codec)
    rewriter = rewriter_of(store)  # a dry run on a store that cannot would promise nothing
    report = Reencryption(key=layers.current, dry_run=dry_run, last_position=after_position)
    by_key: Counter[str] = Counter()
    position = after_position
    while True:
        events = await store.read_all(position, page)
        if not events:
            break
        await _rewrite_page(rewriter, layers, events, report, by_key, dry_run=dry_run)
        position = events[-1].position
        report.last_position = position
        if progress is not None:
            progress(report)
        await asyncio.sleep(pause)  # a turn for commands, even on a store that never waits
    position = 0
    while True:
        archived = await rewriter.archived_payloads(position, page)
        if not archived:
            break
        report.archived += len(archived)
        await _rewrite_page(
            rewriter, layers, archived, report, by_key, dry_run=dry_run, archived=True
        )
        position = archived[-1].position
        if progress is not None:
            progress(report)
        await asyncio.sleep(pause)
    if snapshots:
        report.snapshots_dropped = await _drop_stale_snapshots(
            store, snapshot_store or snapshot_store_for(store), layers, dry_run=dry_run
        )
    return report


async def _rewrite_page(
    rewriter: PayloadRewrite,
    layers: _Layers,
    events: Sequence[StoredEvent | StoredPayload],
    report: Reencryption,
    by_key: Counter[str],
    *,
    dry_run: bool,
    archived: bool = False,
) -> None:
    changes = [
        change
        for event in events
        if (change := _upgrade(layers, event, report, by_key)) is not None
    ]
    report.by_key = dict(by_key)
    if not changes:
        return
    if dry_run:
        report.rewritten += len(changes)
        return
    applied = await rewriter.rewrite_payloads(changes, archived=archived)
    report.rewritten += applied
    report.changed += len(changes) - applied


def _upgrade(
    layers: _Layers,
    event: StoredEvent | StoredPayload,
    report: Reencryption,
    by_key: Counter[str],
) -> PayloadChange | None:
    report.events += 1
    if event.name == DELETION_EVENT and event.version == 0:
        return None  # written by the store itself, never through the codec
    context = _context(event)
    try:
        inner = layers.peel(event.data, context)
        key_id = key_id_of(inner)
        by_key[key_id or PLAINTEXT] += 1
        if key_id == layers.current:
            report.current += 1
            return None
        plain = layers.aes.decode(inner, context)
        new = layers.wrap(layers.aes.encode(plain, context), context)
    except Exception:
        report.unreadable += 1
        if len(report.unreadable_positions) < 100:
            report.unreadable_positions.append(event.position)
        return None
    return PayloadChange(event.position, event.data, new)


async def _drop_stale_snapshots(
    store: EventStore, snapshots: SnapshotStore | None, layers: _Layers, *, dry_run: bool
) -> int:
    """Drop the snapshots encrypted under a key other than the current one; return how many."""
    delete = getattr(snapshots, "delete_snapshot", None)
    if snapshots is None or delete is None:
        return 0
    dropped = 0
    for info in await store.aggregates():
        snapshot = await snapshots.load_snapshot(info.aggregate_name, info.aggregate_id)
        if snapshot is None:
            continue
        try:
            key_id = key_id_of(layers.peel(snapshot.state, b""))
        except Exception:
            continue  # not written through this codec: not ours to judge
        if key_id is None or key_id == layers.current:
            continue
        if not dry_run:
            await delete(info.aggregate_name, info.aggregate_id)
        dropped += 1
    return dropped


async def key_census(store: EventStore, *, page: int = 1000, outer: Any = None) -> dict[str, int]:
    """How many payloads of ``store`` (archived ones included) each key id encrypts
    (:data:`PLAINTEXT`: none).

    No key is needed: each payload names its key. ``outer`` is the part of the codec stored
    outside the encryption, if any (it is undone first).
    """
    counts: Counter[str] = Counter()

    def count(events: Sequence[StoredEvent | StoredPayload]) -> None:
        for event in events:
            if event.name == DELETION_EVENT and event.version == 0:
                continue
            data = event.data
            if outer is not None:
                data = outer.decode(data, _context(event)) if _binds(outer) else outer.decode(data)
            counts[key_id_of(data) or PLAINTEXT] += 1

    position = 0
    while events := await store.read_all(position, page):
        count(events)
        position = events[-1].position
    if isinstance(store, PayloadRewrite):  # archived streams too, where a store keeps them
        position = 0
        while archived := await store.archived_payloads(position, page):
            count(archived)
            position = archived[-1].position
    return dict(counts)
