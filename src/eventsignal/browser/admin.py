"""Who may change things, and the record of what they changed.

The browser is read-only unless it was started with an admin secret. A person proves they know
it once (the login form); the browser then sets a cookie holding an HMAC of the secret, never the
secret itself, that only same-site requests carry (``SameSite=Strict``). Every action a page
offers (retrying or skipping a parked event) needs that cookie, is refused from other sites by
:class:`~eventsignal.web.security.SameOriginMiddleware`, and is appended to an audit stream in
the store itself: one aggregate of type :data:`AUDIT_TYPE` per day, readable in the browser and
by any tool like every other stream.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import msgspec

from eventsignal.domain.errors import AggregateExists, ConcurrencyError
from eventsignal.stores.base import EventStore, StoredEvent

COOKIE = "eventsignal_admin"
AUDIT_TYPE = "eventsignal-audit"
AUDIT_EVENT = "AdminActionTaken"


class AdminAction(msgspec.Struct, frozen=True, kw_only=True):
    """What an admin did, to what, from where; stored as an audit event's data."""

    action: str
    subject: str
    outcome: str
    client: str


class AdminGate:
    """Checks the admin secret and the cookie that stands for it."""

    def __init__(self, secret: str | None) -> None:
        self.enabled = bool(secret)
        key = (secret or "").encode()
        # The cookie: derived from the secret, useless for anything but this browser.
        self._token = hmac.new(key, b"eventsignal browser admin", hashlib.sha256).hexdigest()
        self._secret_digest = hashlib.sha256(key).digest()

    def accepts(self, secret: str) -> bool:
        """Whether ``secret`` is the admin secret (compared in constant time)."""
        given = hashlib.sha256(secret.encode()).digest()
        return self.enabled and hmac.compare_digest(given, self._secret_digest)

    def token(self) -> str:
        return self._token

    def admits(self, cookie: str | None) -> bool:
        """Whether a request carrying this cookie may act."""
        return self.enabled and cookie is not None and hmac.compare_digest(cookie, self._token)


def audit_stream_id(moment: datetime) -> str:
    return f"browser-{moment:%Y-%m-%d}"


async def record(store: EventStore, action: AdminAction) -> int:
    """Append ``action`` to today's audit stream; return its position."""
    now = datetime.now(UTC)
    stream = audit_stream_id(now)
    data = msgspec.json.encode(action)
    for _ in range(10):  # another admin acting at the same moment: read the version again
        version = await _version(store, stream)
        event = StoredEvent(
            id=uuid.uuid4(),
            aggregate_name=AUDIT_TYPE,
            aggregate_id=stream,
            version=version + 1,
            name=AUDIT_EVENT,
            timestamp=now,
            data=data,
        )
        try:
            if version == 0 and not await store.exists(AUDIT_TYPE, stream):
                positions = await store.create(AUDIT_TYPE, stream, [event])
            else:
                positions = await store.append(AUDIT_TYPE, stream, version, [event])
        except (AggregateExists, ConcurrencyError):
            continue
        return positions[0]
    raise ConcurrencyError(AUDIT_TYPE, stream, 0, 0)


async def _version(store: EventStore, stream: str) -> int:
    for info in await store.aggregates(AUDIT_TYPE):
        if info.aggregate_id == stream:
            return info.version
    return 0
