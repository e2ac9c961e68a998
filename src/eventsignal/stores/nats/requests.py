"""Requests to JetStream, asked again while nobody is there to answer them yet.

A stream just created takes a moment to be known on every server of a cluster, and a server
just restarted a moment to recover its streams: until then a request finds nobody to answer.
Nobody answering means nothing was read or stored, so asking again, up to the store's timeout,
is safe. An atomic batch is sent again whole, under a new id: the server drops the pieces of the
first try that reached it (a batch it never saw committed stores nothing).

A read is also asked again when its answer is late (see :data:`READ_TRY`), and waits out a
stream's election (:func:`from_leader`); a write that got no answer is never sent again, since it
may have been stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from eventsignal.stores.nats.wire import BATCH_ID, decode_ack

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

T = TypeVar("T")

RETRY = 0.02
"""Seconds between tries while a replica catches up or a cluster learns where to route."""

READ_TRY = 1.0
"""Seconds a read waits for its first answer before it is asked again (each later try waits
twice as long as the one before, so a slow answer still comes). JetStream answers in
milliseconds; a read sent while a replicated stream changes leader is answered by nobody, and
only a new try reaches the new leader. (Writes are never cut short: an unanswered write may
have been stored.)"""

INCOMPLETE_BATCH = 10176
"""JetStream's refusal of a batch commit whose earlier messages it did not all receive."""

NO_LEADER = 10008
"""JetStream's answer (a 503) to a leader get while a replicated stream has no leader (an
election): "JetStream system temporarily unavailable"."""

ELECTION_RETRY = 0.1
"""Seconds between leader gets while a stream elects its leader."""

NO_MESSAGE = 10037
"""JetStream's answer to a get of a message the stream does not hold (a missing stream is
another 404, 10059, which must not read as an empty one)."""

_INCOMPLETE_CODE = str(INCOMPLETE_BATCH).encode()

Message = tuple[str, bytes, "dict[str, str] | None"]
"""A message published before the request: subject, body, headers."""

Stored = tuple[str, int, dict[str, str], bytes]
"""A message as a stream holds it: subject, sequence, headers, body."""


def _timed_out() -> type[Exception]:
    """The client's error for a request whose answer did not come in time."""
    from nats.errors import TimeoutError as NatsTimeout

    return NatsTimeout


def _not_answered() -> tuple[type[Exception], ...]:
    """The client's errors for a request or JetStream publish nobody was there to take
    (looked up only when something was raised: the client is an optional dependency)."""
    from nats.errors import NoRespondersError
    from nats.js.errors import NoStreamResponseError

    return (NoRespondersError, NoStreamResponseError)


async def patiently(ask: Callable[[], Awaitable[T]], within: float) -> T:
    """``ask()``, again while nobody answers, for ``within`` seconds; then the client's error
    saying so is raised. (For calls that bound each try themselves, as the JetStream client's
    do: one begun just before the end may still take its own time.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await ask()
        except _not_answered():
            if loop.time() + RETRY >= deadline:
                raise
            await asyncio.sleep(RETRY)


async def request(
    nc: Client,
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None,
    *,
    within: float,
    before: Sequence[Message] = (),
    each: float | None = None,
) -> Msg:
    """The answer to ``subject`` within ``within`` seconds, tries included: asked again while
    nobody answers, each try waiting for what time is left. With ``each`` (reads only, which are
    safe to ask again: see :data:`READ_TRY`) a try that got no answer after ``each`` seconds is
    given up and asked again, waiting twice as long.

    With ``before``, the request is an atomic batch's commit and ``before`` its first messages,
    published first. A batch is sent again whole under a new id, also when its commit is refused
    as incomplete (a first message went where nobody took it).
    """
    if each is not None and before:
        raise ValueError("a batch is a write: it is never asked again for being late")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    batch = before
    while True:
        try:
            for to, body, sent in batch:
                await nc.publish(to, body, headers=sent)
            left = deadline - loop.time()
            reply = await nc.request(
                subject,
                payload,
                timeout=left if each is None or each >= left else each,
                headers=headers,
            )
        except _not_answered():
            if loop.time() + RETRY >= deadline:
                raise
        except _timed_out():
            if each is None or loop.time() + RETRY >= deadline:
                raise
            each *= 2
            continue  # the try waited already
        else:
            if not batch or not _incomplete(reply) or loop.time() + RETRY >= deadline:
                return reply
        await asyncio.sleep(RETRY)
        if batch:
            name = uuid.uuid4().hex
            batch = [(to, body, {**(sent or {}), BATCH_ID: name}) for to, body, sent in batch]
            headers = {**(headers or {}), BATCH_ID: name}


def _incomplete(reply: Msg) -> bool:
    """Whether a batch commit was refused for missing some of the batch (nothing stored)."""
    if _INCOMPLETE_CODE not in reply.data:  # every commit that stored: the caller decodes it
        return False
    try:
        ack = decode_ack(reply.data)
    except msgspec.DecodeError:
        return False  # not an acknowledgement: the caller says what it is
    return ack.error is not None and ack.error.err_code == INCOMPLETE_BATCH


def leader_get(stream: str, ask: dict[str, Any]) -> tuple[str, bytes]:
    """The subject and body of a request for the message ``ask`` names (``{"seq": n}`` or
    ``{"last_by_subj": subject}``), answered by the stream's leader: a read that sees every
    write acknowledged before it, which a direct get answered by a replica still catching up may
    not."""
    return f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps(ask).encode()


async def from_leader(
    send: Callable[[float], Awaitable[Msg]], within: float
) -> tuple[Stored | None, dict[str, Any] | None]:
    """What a :func:`leader_get` that ``send(seconds_left)`` sends finds (see
    :func:`leader_answer`), asked again while the stream has no leader, for ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        reply = await send(deadline - loop.time())
        message, error = leader_answer(reply.data)
        if error is None or error.get("err_code") != NO_LEADER:
            return message, error
        if loop.time() + ELECTION_RETRY >= deadline:
            return message, error  # still electing: the caller reports it
        await asyncio.sleep(ELECTION_RETRY)


def leader_answer(data: bytes) -> tuple[Stored | None, dict[str, Any] | None]:
    """The message a :func:`leader_get` found (``None``: there is none), or the server's error."""
    answer = json.loads(data)
    error = answer.get("error")
    if error is not None:
        return None, (None if error.get("err_code") == NO_MESSAGE else error)
    message = answer["message"]
    headers = _parse_headers(base64.b64decode(message.get("hdrs") or ""))
    body = base64.b64decode(message.get("data") or "")
    return (message["subject"], int(message["seq"]), headers, body), None


def direct_answer(reply: Msg) -> tuple[Stored | None, str | None]:
    """The message a direct get found (``None``: there is none), or the status it failed with."""
    headers = reply.headers or {}
    status = headers.get("Status")
    if status is not None:
        return None, (None if status == "404" else f"{status} {headers}")
    return (headers["Nats-Subject"], int(headers["Nats-Sequence"]), headers, reply.data), None


def _parse_headers(raw: bytes) -> dict[str, str]:
    """Headers in their wire form (``NATS/1.0`` then ``Name: value`` lines), as a dict."""
    headers: dict[str, str] = {}
    for line in raw.decode().split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    return headers
