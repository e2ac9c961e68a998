"""What an idempotent command answers, and how its command is recognised on a repeat.

A command sent with an idempotency key runs once per aggregate: a repeat with the same key (a
client retrying after a lost answer, a redelivered message) runs nothing and answers with the
aggregate's current state, flagged as a repeat. The key is stored with the command's events
(:mod:`eventsignal.stores.idempotency`), so this holds across evictions, restarts and processes.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Generic, TypeVar

import msgspec

S = TypeVar("S")

_encode = msgspec.msgpack.Encoder(order="deterministic").encode


class CommandResult(msgspec.Struct, Generic[S], frozen=True, kw_only=True):
    """The answer to a command: the aggregate's state and version once it is stored, and
    whether it was a ``repeated`` idempotency key (then nothing ran, and ``state`` is the
    aggregate's current state)."""

    aggregate_id: str
    state: S
    version: int
    repeated: bool = False


def command_digest(command: object) -> str:
    """A short digest of a command: its class and, where msgspec can encode it (dataclasses,
    Structs, attrs classes, dicts...), its fields.

    Recorded with the key, it tells a repeat from a different command sent under a used key. A
    command msgspec cannot encode is known by its class alone.
    """
    kind = type(command)
    digest = hashlib.blake2b(f"{kind.__module__}.{kind.__qualname__}".encode(), digest_size=16)
    with contextlib.suppress(TypeError, msgspec.EncodeError):
        digest.update(_encode(command))
    return digest.hexdigest()
