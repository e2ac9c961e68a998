"""A sink to an HTTP endpoint (``pip install eventsignal[http]``), signed with HMAC-SHA256.

Each CloudEvent is one POST, in binary mode by default (``ce-`` headers, the data as the body,
as the HTTP binding of CloudEvents says) or structured. Events of one aggregate are sent one
after the other; different aggregates concurrently (``concurrency``). A connection error, a
timeout, a 5xx, 408 or 429 is retried with exponential backoff, then reported as
:class:`~eventsignal.BrokerUnavailable` (the batch is sent again later); another 4xx is
:class:`~eventsignal.EventRefused` (the event is parked). Only a 2xx counts as confirmed.

With a ``secret``, each request carries ``Eventsignal-Timestamp`` (Unix seconds) and
``Eventsignal-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"``; a
receiver checks them with :func:`verify`, which also refuses a stale timestamp (replays).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from eventsignal.domain.errors import BrokerUnavailable, ConfigurationError, EventRefused
from eventsignal.publishing.cloudevent import STRUCTURED_CONTENT_TYPE, CloudEvent, Mode
from eventsignal.publishing.sinks.base import SinkLifecycle

SIGNATURE = "Eventsignal-Signature"
TIMESTAMP = "Eventsignal-Timestamp"
_RETRIED = {408, 429}


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a received request was signed with ``secret`` within ``tolerance`` seconds.

    ``headers`` may be any case-insensitive mapping (Starlette's, httpx's) or a plain dict.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP.lower())
    signature = lowered.get(SIGNATURE.lower())
    if not timestamp or not signature:
        return False
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSink(SinkLifecycle):
    """POSTs each CloudEvent to ``url``."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | None = None,
        mode: Mode = "binary",
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.2,
        concurrency: int = 8,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ConfigurationError(f"mode must be 'structured' or 'binary', not {mode!r}")
        if attempts < 1 or concurrency < 1:
            raise ConfigurationError("attempts and concurrency must be at least 1")
        self.url = url
        self.secret = secret
        self.mode = mode
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.concurrency = concurrency
        self.headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def request(self, event: CloudEvent) -> tuple[dict[str, str], bytes]:
        """The headers and body of ``event``'s POST (signed when there is a secret)."""
        if self.mode == "binary":
            headers = event.headers()
            body = event.body()
        else:
            headers = {"content-type": STRUCTURED_CONTENT_TYPE}
            body = event.structured()
        headers.update(self.headers)
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP] = timestamp
            headers[SIGNATURE] = sign(self.secret, timestamp, body)
        return headers, body

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await self.open()
        by_key: dict[str | None, list[CloudEvent]] = {}
        for event in events:
            by_key.setdefault(event.partitionkey or event.subject, []).append(event)
        gate = asyncio.Semaphore(self.concurrency)

        async def send_all(group: list[CloudEvent]) -> None:
            async with gate:
                for event in group:  # in order: a failure stops this aggregate's later ones
                    await self._send(event)

        results = await asyncio.gather(
            *(send_all(group) for group in by_key.values()), return_exceptions=True
        )
        for result in results:  # an outage first: the whole batch is sent again anyway
            if isinstance(result, BrokerUnavailable):
                raise result
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _send(self, event: CloudEvent) -> None:
        client = self._client
        assert client is not None
        headers, body = self.request(event)
        problem: Any = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                headers, body = self.request(event)  # a fresh timestamp
            try:
                response = await client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                problem = exc
                continue
            status = response.status_code
            if 200 <= status < 300:
                return
            if status >= 500 or status in _RETRIED:
                problem = f"HTTP {status}"
                continue
            raise EventRefused(
                f"{self.url} refused event {event.id} ({event.type}): HTTP {status} "
                f"{response.text[:200]!r}"
            )
        raise BrokerUnavailable(
            f"{self.url} did not accept event {event.id} after {self.attempts} attempts: "
            f"{problem!r}"
        )
