"""A sink from a URL: the scheme picks the broker, query parameters its options.

    nats://host:4222?stream=eventsignal&prefix=eventsignal
    redis://host:6379/0?stream=eventsignal&maxlen=100000       (rediss:// with TLS)
    amqp://user:password@host:5672/vhost?exchange=eventsignal&queue=orders   (amqps://)
    https://example.com/hooks/events                           (http:// too)

``mode=structured|binary`` works on all of them. Each broker's client library is imported only
when its scheme is used, so a missing extra is named when it is needed.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventsignal.domain.errors import ConfigurationError
from eventsignal.publishing.cloudevent import Mode
from eventsignal.publishing.sinks.base import Sink

_EXTRAS = {"nats": "nats", "redis": "redis", "amqp": "rabbitmq", "http": "http"}


def _split(url: str, known: set[str]) -> tuple[str, dict[str, str]]:
    """The URL without the options in ``known``, and those options."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in known:
            ours[key] = value
        else:
            theirs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def sink_from_url(url: str, *, mode: Mode | None = None, secret: str | None = None) -> Sink:
    """The sink ``url`` names (unopened). ``secret`` signs webhook requests."""
    scheme = urlsplit(url).scheme.lower()
    family = {"rediss": "redis", "amqps": "amqp", "https": "http", "tls": "nats"}.get(
        scheme, scheme
    )
    if family not in _EXTRAS:
        raise ConfigurationError(
            f"cannot publish to {scheme or url!r}: use nats://, redis://, amqp:// or https://"
        )
    try:
        return _make(family, url, mode, secret)
    except ImportError as exc:
        raise ConfigurationError(
            f"publishing to {scheme}:// needs pip install 'eventsignal[{_EXTRAS[family]}]' ({exc})"
        ) from None


def _make(family: str, url: str, mode: Mode | None, secret: str | None) -> Sink:
    common = {"mode": mode} if mode is not None else {}
    if family == "nats":
        from eventsignal.publishing.sinks.jetstream import JetStreamSink

        server, options = _split(url, {"stream", "prefix"})
        return JetStreamSink(server, **options, **common)  # type: ignore[arg-type]
    if family == "redis":
        from eventsignal.publishing.sinks.redis import RedisStreamSink

        server, options = _split(url, {"stream", "maxlen"})
        maxlen = int(options.pop("maxlen")) if "maxlen" in options else None
        return RedisStreamSink(server, maxlen=maxlen, **options, **common)  # type: ignore[arg-type]
    if family == "amqp":
        from eventsignal.publishing.sinks.rabbitmq import RabbitMQSink

        server, options = _split(url, {"exchange", "queue"})
        return RabbitMQSink(server, **options, **common)  # type: ignore[arg-type]
    from eventsignal.publishing.sinks.webhook import WebhookSink

    return WebhookSink(url, secret=secret, **common)  # type: ignore[arg-type]
