"""What a JetStream acknowledgement promises, learned when a store opens.

A server acknowledges a message once it is written to its files, not once it is on disk: with
the default ``sync_interval`` (two minutes) a power loss can take back acknowledged messages.
An acknowledgement survives a crash in two setups only: every server fsyncs each write before
acknowledging (``jetstream { sync_interval: always }``), or the stream has three replicas or
more, so an acknowledged message is held by a quorum and one machine losing its page cache loses
no copy that counts.

A client cannot ask the server for its fsync setting over the NATS protocol (the system account's
requests aside, which an application should not need): the monitoring endpoint's ``/varz`` shows
it, as ``jetstream.config.sync_always``. So the store reads it there when told where the
monitoring port is, and otherwise knows the setting only through the stream's replicas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Sequence
from typing import Literal

from eventsignal.domain.errors import ConfigurationError, StoreUnavailable

Durability = Literal["require", "warn", "ignore"]
"""What to do at open when an acknowledgement might not survive a crash: refuse to open, log a
warning, or say nothing."""

DURABILITIES: tuple[Durability, ...] = ("require", "warn", "ignore")

QUORUM = 3
"""Replicas from which an acknowledgement means a quorum (two or more servers) holds the message."""

logger = logging.getLogger("eventsignal.stores.nats")


async def fsyncs_every_write(monitors: Sequence[str], wait: float) -> bool:
    """Whether every server behind ``monitors`` fsyncs each write before acknowledging it.

    Each endpoint gets ``wait`` seconds to answer, in a thread: the standard library suffices
    for one small GET at open, so the adapter needs no HTTP client.

    Raises :class:`~eventsignal.StoreUnavailable` when a monitoring endpoint does not answer.
    """
    answers = await asyncio.gather(
        *(asyncio.to_thread(_sync_always, monitor, wait) for monitor in monitors)
    )
    return all(answers)


def _sync_always(monitor: str, timeout: float) -> bool:
    url = f"{monitor.rstrip('/')}/varz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            varz = json.load(reply)
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"cannot read the NATS monitoring endpoint {url}: {exc}") from exc
    config = (varz.get("jetstream") or {}).get("config") or {}
    return config.get("sync_always") is True


def shortfall(replicas: int, fsync: bool | None) -> str | None:
    """Why an acknowledgement might not survive a crash, or ``None`` when it will.

    ``fsync`` is the servers' setting when known (``None``: no monitoring endpoint to ask).
    """
    if replicas >= QUORUM or fsync:
        return None
    held = f"the stream has {replicas} replica{'s' if replicas > 1 else ''}"
    if fsync is None:
        return (
            f"{held} and the servers' fsync setting is unknown: set jetstream "
            "{ sync_interval: always } on every server and pass monitor= (the servers' "
            f"monitoring URLs) so the store can see it, or use replicas={QUORUM} on a cluster"
        )
    return (
        f"{held} and the servers fsync only every sync_interval: set jetstream "
        f"{{ sync_interval: always }} on every server, or use replicas={QUORUM} on a cluster"
    )


def enforce(
    durability: Durability,
    where: str,
    replicas: int,
    fsync: bool | None,
    warned: str | None = None,
) -> str | None:
    """Refuse (``require``) or warn about (``warn``) acknowledgements that might not be durable.

    Returns the reason they might not be (``None``: they are); ``warned``, the reason returned
    last time, is not warned of again.
    """
    reason = shortfall(replicas, fsync)
    if reason is None or durability == "ignore":
        return reason
    message = f"{where}: an acknowledged write may be lost in a crash, since {reason}"
    if durability == "require":
        raise ConfigurationError(f"{message} (durability='require')")
    if reason != warned:
        logger.warning("%s (durability='ignore' silences this)", message)
    return reason


__all__ = ["DURABILITIES", "QUORUM", "Durability", "enforce", "fsyncs_every_write", "shortfall"]
