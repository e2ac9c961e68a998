"""A sink to a Redis stream (``pip install eventsignal[redis]``).

A batch is one write of ``XADD`` commands (framed here, see :meth:`RedisStreamSink._commands`),
confirmed by their replies. Redis keeps no de-duplication window, so the entry's ``id`` field
(the CloudEvent id) is what consumers drop a republished event by. Structured mode stores the
envelope in an ``event`` field beside ``id``; binary mode stores each attribute in a ``ce-``
field and the data in ``data``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from eventsignal.domain.errors import BrokerUnavailable, ConfigurationError
from eventsignal.publishing.cloudevent import CloudEvent, Mode
from eventsignal.publishing.sinks.base import SinkLifecycle

_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def fields(event: CloudEvent, mode: Mode = "structured") -> dict[str, str | bytes]:
    """The fields of the stream entry of ``event``."""
    if mode == "structured":
        return {"id": event.id, "event": event.structured()}
    found: dict[str, str | bytes] = dict(event.headers())
    found["data"] = event.body()
    return found


class RedisStreamSink(SinkLifecycle):
    """Appends to the Redis stream ``stream`` (``maxlen`` trims it, approximately)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379",
        *,
        stream: str = "eventsignal",
        mode: Mode = "structured",
        maxlen: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ConfigurationError(f"mode must be 'structured' or 'binary', not {mode!r}")
        self.url = url
        self.stream = stream
        self.mode = mode
        self.maxlen = maxlen
        self.timeout = timeout
        self._client: Any = None

    async def open(self) -> None:
        if self._client is None:
            # No per-read socket timeout (it costs a timer per reply): a batch has one, below.
            self._client = aioredis.from_url(self.url, socket_connect_timeout=self.timeout)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await self.open()
        wire = self._commands(events)
        pool = self._client.connection_pool
        try:
            async with asyncio.timeout(self.timeout):
                connection = await pool.get_connection()
                try:
                    await connection.send_packed_command(wire, check_health=False)
                    for _ in events:  # the XADD replies, in order; an error reply raises
                        await connection.read_response()
                except BaseException:
                    # Replies may be left unread on this connection: it cannot serve again.
                    await connection.disconnect(nowait=True)
                    raise
                finally:
                    await pool.release(connection)
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(
                f"Redis did not confirm {len(events)} events on {self.stream!r}: {exc!r}"
            ) from exc

    def _commands(self, events: Sequence[CloudEvent]) -> bytes:
        """The batch's XADDs as one RESP payload, framed here: redis-py's pipeline would encode
        and frame every argument of every command, which costs more than the event itself."""
        stream = self.stream.encode()
        head = [b"XADD", stream]
        if self.maxlen is not None:
            head += [b"MAXLEN", b"~", b"%d" % self.maxlen]
        head.append(b"*")
        if self.mode == "binary":
            return b"".join(
                _command([*head, *_encoded(fields(event, "binary"))]) for event in events
            )
        # Structured: only the id and the envelope change from one entry to the next.
        prefix = b"*%d\r\n%s" % (len(head) + 4, _bulk([*head, b"id"]))
        parts = []
        for event in events:
            ident = event.id.encode()
            body = event.structured()
            parts.append(
                b"%s$%d\r\n%s\r\n$5\r\nevent\r\n$%d\r\n%s\r\n"
                % (prefix, len(ident), ident, len(body), body)
            )
        return b"".join(parts)


def _encoded(entry: dict[str, str | bytes]) -> list[bytes]:
    return [
        item if isinstance(item, bytes) else item.encode()
        for pair in entry.items()
        for item in pair
    ]


def _command(args: Sequence[bytes]) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    return b"*%d\r\n%s" % (len(args), _bulk(args))


def _bulk(args: Sequence[bytes]) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
