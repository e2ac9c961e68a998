"""Noticing forgettings made by other processes, so live copies of the plaintext do not linger.

A Signal whose events have personal fields asks its store, every ``key_ttl`` seconds, which
subjects were forgotten since it last looked; for each it drops the key from this process and
lets the Signal evict the aggregates that named the subject (and drop their snapshots, which
it may have taken after the forgetting from a live copy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from eventsignal.privacy.keychain import keychain_for, subject_key_store_for
from eventsignal.privacy.settings import Privacy
from eventsignal.stores.base import EventStore

logger = logging.getLogger("eventsignal.privacy")

_SKEW = timedelta(minutes=5)
OnForgotten = Callable[[Sequence[tuple[str, str]]], Awaitable[None]]


async def watch_forgettings(store: EventStore, privacy: Privacy, on_forgotten: OnForgotten) -> None:
    """Run until cancelled: every ``privacy.key_ttl`` seconds (at least a tenth), hand the
    aggregates of subjects forgotten since the last look to ``on_forgotten``."""
    keys = subject_key_store_for(store)
    # Moments come from other machines' clocks: look back a margin, and skip what was seen.
    since = datetime.now(UTC) - _SKEW
    seen: set[str] = set()
    while True:
        await asyncio.sleep(max(privacy.key_ttl, 0.1))
        try:
            for item in await keys.forgotten_subjects(since):
                if item.digest in seen:
                    continue
                keychain_for(store).forget(item.digest)
                await on_forgotten(await keys.subject_uses(item.digest))
                seen.add(item.digest)
                since = max(since, item.forgotten_at - _SKEW)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("could not look for subjects forgotten elsewhere", exc_info=True)
