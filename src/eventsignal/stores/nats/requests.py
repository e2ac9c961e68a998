"""Requests to JetStream, asked again while nobody is there to answer them yet.

A stream just created takes a moment to be known on every server of a cluster, and a server
just restarted a moment to recover its streams: until then a request finds nobody to answer.
Nobody answering means nothing was read or stored, so asking again, up to the store's timeout,
is safe. An atomic batch is sent again whole, under a new id: the server drops the pieces of the
first try that reached it (a batch it never saw committed stores nothing).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from eventsignal.stores.nats.wire import BATCH_ID, decode_ack

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

T = TypeVar("T")

RETRY = 0.02
"""Seconds between tries while a replica catches up or a cluster learns where to route."""

INCOMPLETE_BATCH = 10176
"""JetStream's refusal of a batch commit whose earlier messages it did not all receive."""

Message = tuple[str, bytes, "dict[str, str] | None"]
"""A message published before the request: subject, body, headers."""

Stored = tuple[str, int, dict[str, str], bytes]
"""A message as a stream holds it: subject, sequence, headers, body."""


async def patiently(ask: Callable[[], Awaitable[T]], retry_for: float) -> T:
    """``ask()``, again while nobody answers, for ``retry_for`` seconds; then the client's
    error saying so is raised."""
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
    """The answer to ``subject``, asked :func:`patiently`.

    With ``before``, the request is an atomic batch's commit and ``before`` its first messages,
    published first. The batch is also sent again when its commit is refused as incomplete (a
    first message went where nobody took it), until ``retry_for`` has passed.
    """
    if not before:
        return await patiently(
            lambda: nc.request(subject, payload, timeout=answer_within, headers=headers),
            retry_for,
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    batch: Sequence[Message] = before
    last = headers or {}
    while True:
        send = partial(_send, nc, batch, subject, payload, last, answer_within)
        reply = await patiently(send, deadline - loop.time())
        try:
            ack = decode_ack(reply.data)
        except msgspec.DecodeError:
            return reply  # not an acknowledgement: the caller says what it is
        if ack.error is None or ack.error.err_code != INCOMPLETE_BATCH:
            return reply
        if loop.time() >= deadline:
            return reply
        await asyncio.sleep(RETRY)
        name = uuid.uuid4().hex  # the same batch under a new id
        batch = [(to, body, {**(sent or {}), BATCH_ID: name}) for to, body, sent in batch]
        last = {**last, BATCH_ID: name}


async def _send(
    nc: Client,
    batch: Sequence[Message],
    subject: str,
    payload: bytes,
    headers: dict[str, str],
    answer_within: float,
) -> Msg:
    for to, body, sent in batch:
        await nc.publish(to, body, headers=sent)
    return await nc.request(subject, payload, timeout=answer_within, headers=headers)


def leader_get(stream: str, ask: dict[str, Any]) -> tuple[str, bytes]:
    """The subject and body of a request for the message ``ask`` names (``{"seq": n}`` or
    ``{"last_by_subj": subject}``), answered by the stream's leader: a read that sees every
    write acknowledged before it, which a direct get answered by a replica still catching up may
    not."""
    return f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps(ask).encode()


def leader_answer(data: bytes) -> tuple[Stored | None, dict[str, Any] | None]:
    """The message a :func:`leader_get` found (``None``: there is none), or the server's error."""
    answer = json.loads(data)
    error = answer.get("error")
    if error is not None:
        return None, (None if error.get("code") == 404 else error)
    message = answer["message"]
    headers = _parse_headers(base64.b64decode(message.get("hdrs") or ""))
    body = base64.b64decode(message.get("data") or "")
    return (message["subject"], int(message["seq"]), headers, body), None


def _parse_headers(raw: bytes) -> dict[str, str]:
    """Headers in their wire form (``NATS/1.0`` then ``Name: value`` lines), as a dict."""
    headers: dict[str, str] = {}
    for line in raw.decode().split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    return headers
