"""Carrying subject keys along when a store is copied, so personal values stay readable there
and forgotten subjects stay forgotten."""

from __future__ import annotations

from eventsignal.domain.personal import METADATA_PREFIX as PREFIX
from eventsignal.privacy.keychain import subject_key_store_for
from eventsignal.stores.base import EventStore


async def copy_subject_keys(source: EventStore, target: EventStore, *, batch: int = 1000) -> int:
    """Copy the keys of the subjects the source's events name (their uses, and the record of
    those forgotten, with its moment) into ``target``; return how many subjects.

    Keys are copied as stored (wrapped by the master key, when there is one).
    """
    digests: set[str] = set()
    position = 0
    while True:
        events = await source.read_all(position, batch)
        if not events:
            break
        for event in events:
            for name in event.metadata:
                if name.startswith(PREFIX):
                    digests.add(name[len(PREFIX) :])
        position = events[-1].position
    if not digests:
        return 0
    reads, writes = subject_key_store_for(source), subject_key_store_for(target)
    keys = await reads.load_subject_keys(digests)
    moments = {f.digest: f.forgotten_at for f in await reads.forgotten_subjects()}
    for digest in sorted(digests):
        uses = [
            (digest, name, aggregate_id) for name, aggregate_id in await reads.subject_uses(digest)
        ]
        stored = keys.get(digest)
        await writes.add_subject_keys({digest: stored} if stored is not None else {}, uses)
        if digest in moments:
            await writes.forget_subject_key(digest, moments[digest])
    return len(digests)
