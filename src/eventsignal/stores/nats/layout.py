"""Which layout a stream holds, chosen when the stream is created, and what its settings allow.

A stream created on a server with atomic batch publish (2.12 or later) stores one message per
event (:data:`~eventsignal.stores.nats.wire.EVENTS`) and allows atomic batches; on an older one,
one message per command (:data:`~eventsignal.stores.nats.wire.COMMANDS`). The choice is recorded
in the stream's metadata (``eventsignal.layout``) and read back by every store that opens the
stream, so all writers of one stream agree, whatever server each happens to reach first.

A stream without that metadata (servers before 2.10 keep none, and streams created by earlier
versions of this store have none) is taken to hold one message per command: every version of the
store can read that layout and write it on any server, so it is the safe guess. Readers tell the
layouts apart message by message, so a stream moved from one layout to the other (with the copy
command) or holding both is read all the same.

A stream kept by this store must never delete a message on its own: the limits that do (an age,
or a count or size limit with ``discard: old``) would silently take back acknowledged events, so
a stream configured with them is refused at open, naming the setting.
"""

from __future__ import annotations

from typing import Any, Literal

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.nats.wire import COMMANDS, EVENTS, LAYOUT

Layout = Literal["event-per-message", "command-per-message"]
"""The two layouts a stream may hold, as its metadata records them."""

LAYOUTS: tuple[Layout, ...] = (EVENTS, COMMANDS)

ATOMIC_SINCE = (2, 12)
"""The first server version that stores a batch of messages atomically."""

METADATA_SINCE = (2, 10)
"""The first server version that keeps a stream's metadata."""


def creation_settings(
    stream: str, server: tuple[int, int], layout: Layout | None = None
) -> dict[str, Any]:
    """The layout settings of ``stream`` created now on a server of version ``server``: the
    ``layout`` asked for, or (``None``) one message per event wherever the server allows it."""
    if layout is None:
        layout = EVENTS if server >= ATOMIC_SINCE else COMMANDS
    if layout == EVENTS:
        if server < ATOMIC_SINCE:
            raise ConfigurationError(
                f"stream {stream!r} cannot hold one message per event on this server "
                f"({'.'.join(map(str, server))}): atomic batch publish needs 2.12 or later"
            )
        return {"allow_atomic": True, "metadata": {LAYOUT: EVENTS}}
    if server >= METADATA_SINCE:
        return {"metadata": {LAYOUT: COMMANDS}}
    return {}


def layout_of(stream: str, config: Any) -> str:
    """The layout recorded for ``stream`` (a nats-py ``StreamConfig``), checked against it."""
    layout: str = (config.metadata or {}).get(LAYOUT, COMMANDS)
    if layout not in (EVENTS, COMMANDS):
        raise ConfigurationError(
            f"stream {stream!r} records layout {layout!r}, which this version of eventsignal "
            f"does not know ({EVENTS!r} or {COMMANDS!r}): it was written by a newer one"
        )
    if layout == EVENTS and not config.allow_atomic:
        raise ConfigurationError(
            f"stream {stream!r} stores one message per event, each command as one atomic "
            "batch, but does not allow atomic batch publish now: set allow_atomic on it again"
        )
    return layout


def check_retention(stream: str, config: Any) -> None:
    """Refuse a stream whose settings let the server delete messages on its own."""
    from nats.js.api import DiscardPolicy, RetentionPolicy

    dropping: list[str] = []
    if config.retention not in (None, RetentionPolicy.LIMITS):
        dropping.append(f"retention={config.retention.value}")
    if config.max_age:
        dropping.append(f"max_age={config.max_age:g}s")
    discard_old = config.discard in (None, DiscardPolicy.OLD)
    if discard_old:
        for name in ("max_msgs", "max_bytes"):
            value = getattr(config, name, None)
            if value is not None and value > 0:
                dropping.append(f"{name}={value} with discard=old")
    per_subject = config.max_msgs_per_subject
    if (
        per_subject is not None
        and per_subject > 0
        and (discard_old or not config.discard_new_per_subject)
    ):
        dropping.append(f"max_msgs_per_subject={per_subject} without discard_new_per_subject")
    if dropping:
        raise ConfigurationError(
            f"stream {stream!r} is configured with {', '.join(dropping)}: the server would "
            "silently delete acknowledged events. Remove the limit, or use discard=new "
            "(with discard_new_per_subject) so that a full stream refuses writes instead"
        )


__all__ = [
    "ATOMIC_SINCE",
    "LAYOUTS",
    "METADATA_SINCE",
    "Layout",
    "check_retention",
    "creation_settings",
    "layout_of",
]
