"""A request to a replicated stream, asked again while the cluster is still learning its subjects.

A stream just created (or a replica just restarted) takes a moment to be known on every server
of a cluster: until then a request routed to it finds nobody to answer. Nobody answering means
nothing was stored, so asking again is safe; on a single server it is final at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

T = TypeVar("T")

RETRY = 0.02
"""Seconds between tries while a replica catches up or a cluster learns where to route."""

Message = tuple[str, bytes, "dict[str, str] | None"]
"""A message published before the request: subject, body, headers."""


async def patiently(ask: Callable[[], Awaitable[T]], retry_for: float) -> T:
    """``ask()``, again while nobody answers, for ``retry_for`` seconds (a replicated stream's
    timeout; 0 on one server); then the client's error saying so is raised."""
    from nats.errors import NoRespondersError
    from nats.js.errors import NoStreamResponseError  # a JetStream publish nobody answered

    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    while True:
        try:
            return await ask()
        except (NoRespondersError, NoStreamResponseError):
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(RETRY)


async def request(
    nc: Client,
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None,
    *,
    answer_within: float,
    retry_for: float,
    before: Sequence[Message] = (),
) -> Msg:
    """The answer to ``subject``, after publishing ``before`` (an atomic batch's first messages,
    which only the last one's answer confirms), asked :func:`patiently`, ``before`` and all."""

    async def ask() -> Msg:
        for to, body, sent in before:
            await nc.publish(to, body, headers=sent)
        return await nc.request(subject, payload, timeout=answer_within, headers=headers)

    return await patiently(ask, retry_for)
