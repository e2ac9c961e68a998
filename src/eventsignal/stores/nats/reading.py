"""Reading a NatsStore's stream in order, page after page, through one pull consumer.

A subscription reads the log as ``read_all(after, n)`` again and again, each page starting where
the last one ended. Opening a consumer for every page costs several round trips and leaves the
pipe empty while the page is handled; a :class:`LogReader` instead keeps an ephemeral pull
consumer (no acks, in memory) between pages and keeps a window of messages asked for ahead of
the reader, so the server streams while the handler works. The pull requests are long polls: a
reader that has caught up already has the next message asked for, and it arrives as soon as it is
stored.

The window bounds the messages in flight and buffered (backpressure: nothing arrives that was
not asked for): 2,000, or fewer when messages are large, about 8 MiB at their average size.
Every message is decoded through the store's own decoder, one message at a time, so the reader
does not depend on how events are laid out in messages.

A page is complete as of the moment it is asked for: when the buffer holds fewer events than
asked, the reader waits until it has received every message up to the stream's last sequence
(which the caller supplies, asked from the server), or until the page is full.

Without acks the consumer counts a message delivered once it is sent, and messages sent while
the client's connection is going down are lost on the way; the same pull request may then go on
delivering on the new connection. The consumer numbers what it delivers, one by one, so a reader
that finds a number missing knows it lost messages: it hands out nothing past them and ends, and
the store reads on from there with a new consumer.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from eventsignal.domain.errors import StoreUnavailable
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.nats.requests import RETRY

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

Decode = Callable[[str, int, dict[str, str], bytes], Sequence[StoredEvent]]

WINDOW = 2000
"""Messages asked for ahead of the reader, at most (plus the page being read)."""

WINDOW_BYTES = 8 * 1024 * 1024
"""Bytes asked for ahead of the reader, roughly: large messages shrink the window."""

IDLE = 30.0
"""Seconds an unread consumer lives on the server (and a long poll waits) before it ends."""

_NO_RESPONDERS = "503"
_TIMED_OUT = "408"  # a long poll ended: the messages it still owed are no longer owed
_HEARTBEAT = "100"


class LogReader:
    """One consumer reading the stream forward from ``position``; one page at a time.

    ``position`` is the position of the last event handed out (the ``after`` of the next page).
    A reader whose consumer failed or vanished (expired while unread, a server gone) raises
    :class:`~eventsignal.StoreUnavailable` once and is :attr:`broken` afterwards: the store
    opens a new one at the same position.
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        position: int,
        start: int,
        decode: Decode,
        timeout: float,
    ) -> None:
        self.position = position
        self.broken = False
        self._nc = nc
        self._stream = stream
        self._decode = decode
        self._timeout = timeout
        self._next = start  # the first stream sequence not received yet
        self._delivered = 0  # the consumer's number of the last message taken
        self._known_last = start - 1  # the newest sequence known to exist
        self._arrived: deque[Msg] = deque()
        self._left: deque[StoredEvent] = deque()  # decoded, not handed out (a page ended)
        self._owed = 0  # messages asked for and not received, nor released by a timeout
        self._more = asyncio.Event()
        self._status: str | None = None  # a status that ends this reader
        self._received = 0  # messages arrived from the consumer, and their bytes
        self._bytes = 0
        self._created = 0.0
        self._api = ""
        self._inbox = ""
        self._sub: Subscription | None = None
        self._consumer = ""

    async def start(self) -> None:
        """Create the consumer at the start sequence and listen on an inbox of its own."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._next,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=IDLE,
        )
        nc = self._nc
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(self._inbox, cb=self._receive)
        try:
            js = nc.jetstream(timeout=self._timeout)
            self._consumer = (await js.add_consumer(self._stream, config)).name
        except Exception as exc:
            await self.close()
            raise StoreUnavailable(f"cannot read stream {self._stream!r}: {exc}") from exc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._consumer}"
        self._created = asyncio.get_running_loop().time()

    @property
    def read_through(self) -> int:
        """The stream sequence up to which every message has been read."""
        return self._next - 1

    async def close(self) -> None:
        self.broken = True
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
            if self._consumer and self._nc.is_connected:
                # Fire and forget: an abandoned consumer also expires on its own.
                await self._nc.publish(
                    f"$JS.API.CONSUMER.DELETE.{self._stream}.{self._consumer}", b""
                )
        except Exception:  # closing anyway; the server forgets the consumer by itself
            pass

    async def _receive(self, msg: Msg) -> None:
        if msg.reply:
            self._arrived.append(msg)
            self._owed -= 1
            self._received += 1
            self._bytes += len(msg.data)
        else:
            headers = msg.headers or {}
            status = headers.get("Status")
            if status == _TIMED_OUT:
                self._owed -= int(headers.get("Nats-Pending-Messages", 0))
            elif status != _HEARTBEAT:
                self._status = f"{status} {headers.get('Description', '')}".strip()
        self._more.set()

    async def _ask(self) -> None:
        """Keep a window of messages asked for ahead of what has arrived."""
        window = WINDOW
        if self._bytes:  # as many messages as fit the byte budget, at their average size
            window = max(1, min(WINDOW, WINDOW_BYTES * self._received // self._bytes))
        wanted = window - self._owed - len(self._arrived)
        if wanted < max(window // 2, 1):
            return
        request = {"batch": wanted, "expires": int(IDLE / 2 * 1e9)}
        self._owed += wanted
        await self._nc.publish(self._api, json.dumps(request).encode(), reply=self._inbox)

    def _take(self, page: list[StoredEvent], limit: int) -> None:
        """Move buffered events, then decoded arrivals, into ``page``, up to ``limit``."""
        left = self._left
        while left and len(page) < limit:
            page.append(left.popleft())
        arrived = self._arrived
        decode = self._decode
        after = self.position
        while arrived and len(page) < limit:
            msg = arrived.popleft()
            sequence, delivered, pending = _numbers(msg.reply)
            if delivered != self._delivered + 1:
                self._lost(delivered)
                break
            self._delivered = delivered
            self._next = sequence + 1
            if sequence + pending > self._known_last:
                self._known_last = sequence + pending
            events = decode(msg.subject, sequence, msg.headers or {}, msg.data)
            if events and events[0].position <= after:  # a message the last page ended inside
                events = [e for e in events if e.position > after]
            room = limit - len(page)
            page.extend(events[:room])
            if len(events) > room:
                left.extend(events[room:])
        if page:
            self.position = page[-1].position

    def _lost(self, delivered: int) -> None:
        """Messages the consumer sent never arrived: nothing after them may be handed out."""
        self._arrived.clear()
        self._status = (
            f"lost messages {self._delivered + 1} to {delivered - 1} of its consumer on the way"
            " (a connection dropped)"
        )
        self._more.set()

    async def page(
        self, limit: int, last_sequence: Callable[[], Awaitable[int]]
    ) -> list[StoredEvent]:
        """Up to ``limit`` events after :attr:`position`: every one stored before the call,
        unless ``limit`` comes first. ``last_sequence`` asks the server for the stream's newest
        sequence; it is only called when what is known to exist has been read."""
        page: list[StoredEvent] = []
        position = self.position
        try:
            await self._ask()
            self._take(page, limit)
            last: int | None = None
            loop = asyncio.get_running_loop()
            since = loop.time()
            while len(page) < limit:
                if self._next > self._known_last:
                    if last is None:
                        last = await last_sequence()
                        self._known_last = max(self._known_last, last)
                    if self._next > last:
                        break
                if not self._arrived:
                    await self._wait(loop.time() - since)
                before = self._next
                self._take(page, limit)
                if self._next > before:
                    since = loop.time()
            return page
        except BaseException:
            # Cut short (a failure, or a caller that gave up): what this page took goes back,
            # so the reader still stands where the caller last saw it.
            self._left.extendleft(reversed(page))
            self.position = position
            raise

    async def _wait(self, stalled: float) -> None:
        """Wait for a message, asking for more; raise if the consumer failed or stalled."""
        status, self._status = self._status, None
        if status is not None:
            young = asyncio.get_running_loop().time() - self._created < self._timeout
            if not (status.startswith(_NO_RESPONDERS) and young and not self._received):
                self.broken = True
                raise StoreUnavailable(f"reading stream {self._stream!r} failed: {status}")
            # On a cluster a new consumer takes a moment to be known everywhere: ask again.
            self._owed = 0
            await asyncio.sleep(RETRY)
        if stalled >= self._timeout:
            self.broken = True
            raise StoreUnavailable(
                f"reading stream {self._stream!r} stalled: nothing arrived for {self._timeout}s"
            )
        self._more.clear()
        await self._ask()
        try:
            async with asyncio.timeout(self._timeout - stalled):
                await self._more.wait()
        except TimeoutError:
            pass


def _numbers(reply: str) -> tuple[int, int, int]:
    """The stream sequence, the consumer's delivery number and the messages still pending, from
    a JetStream reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``,
    or the newer form with a domain and an account hash after ``ACK`` and a token at the end.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[6]), int(tokens[8])
    return int(tokens[7]), int(tokens[8]), int(tokens[10])
