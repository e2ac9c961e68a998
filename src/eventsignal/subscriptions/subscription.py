"""What a durable subscription is: a name, a handler, the events it reads and its policies.

A :class:`Subscription` is a plain declaration; a
:class:`~eventsignal.subscriptions.SubscriptionRunner` runs it against a store. Handlers take
``(event)`` for at-least-once delivery, or ``(event, tx)`` to write in the transaction that
advances the checkpoint, which makes their effect exactly-once.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.events import Event
from eventsignal.domain.identity import validate_name
from eventsignal.serialization import EventSerializer

if TYPE_CHECKING:
    from eventsignal.subscriptions.readmodel import ReadModel
    from eventsignal.subscriptions.transaction import Transaction

Handler = (
    Callable[[Event[Any]], Awaitable[object] | object]
    | Callable[[Event[Any], "Transaction"], Awaitable[object] | object]
)
Start = Literal["beginning", "end"]
OnFailure = Literal["park", "stop"]


def _takes_transaction(handler: Callable[..., object]) -> bool:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature take the event only
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """A named, durable reader of the store's events, in global order.

    ``configs`` are the aggregate configs (or serializers, e.g. ``signal.serializer`` when a
    transcoder is used) of the types the handler reads; by default only those aggregate types are
    delivered. ``event_names`` narrows delivery further. An event of a delivered aggregate type
    whose name no config knows is a failure (retried, then parked), never silently dropped.

    ``start`` applies the first time the subscription runs: from the ``"beginning"`` of the store
    or from its ``"end"``. Later runs resume from the stored checkpoint.

    ``partitions`` > 1 lets several processes share the work: events are split by aggregate (order
    per aggregate is kept) and each partition is leased to one process at a time.

    A failing handler is retried ``max_attempts`` times with exponential backoff from
    ``retry_delay``; then the event is parked and, by ``on_failure``, the subscription goes on
    (``"park"``) or stops before it (``"stop"``).

    ``read_models`` are the document stores the handler maintains; a rebuild empties them.

    ``lease_ttl`` (seconds) is how long a partition stays leased without renewal; runners renew
    every third of it. It also paces a handler's transactions: each holds at most about
    ``lease_ttl / 2`` of handler time before it commits, and on PostgreSQL one that sends no SQL
    for ``2 * lease_ttl`` is ended by the server (:class:`~eventsignal.subscriptions.HandlerTooSlow`
    for the event).
    """

    name: str
    handler: Handler
    configs: Iterable[AggregateConfig[Any, Any] | EventSerializer] = ()
    aggregate_names: Collection[str] | None = None
    event_names: Collection[str] | None = None
    start: Start = "beginning"
    partitions: int = 1
    batch_size: int = 1000
    max_attempts: int = 5
    retry_delay: float = 0.1
    max_retry_delay: float = 10.0
    on_failure: OnFailure = "park"
    lease_ttl: float = 10.0
    poll_interval: float = 1.0
    read_models: Iterable[ReadModel[Any]] = ()
    transactional: bool | None = None
    serializers: Mapping[str, EventSerializer] = field(init=False)
    takes_transaction: bool = field(init=False)

    def __post_init__(self) -> None:
        validate_name(self.name)
        serializers: dict[str, EventSerializer] = {}
        for config in self.configs:
            if isinstance(config, EventSerializer):
                serializers[config.aggregate_name] = config
            else:
                serializers[config.name] = EventSerializer(
                    config.name, config.event_types, upcasters=config.upcasters
                )
        names = set(serializers) if self.aggregate_names is None else set(self.aggregate_names)
        missing = names - set(serializers)
        if missing:
            raise ConfigurationError(
                f"subscription {self.name!r} reads {', '.join(sorted(missing))} "
                "but has no config to decode them"
            )
        if not names:
            raise ConfigurationError(
                f"subscription {self.name!r} reads no aggregate type: pass configs"
            )
        if self.partitions < 1 or self.batch_size < 1 or self.max_attempts < 1:
            raise ConfigurationError("partitions, batch_size and max_attempts must be at least 1")
        if self.lease_ttl <= 0 or self.poll_interval <= 0 or self.retry_delay < 0:
            raise ConfigurationError(
                "lease_ttl and poll_interval must be positive, retry_delay >= 0"
            )
        if self.start not in ("beginning", "end"):
            raise ConfigurationError(f"start must be 'beginning' or 'end', not {self.start!r}")
        if self.on_failure not in ("park", "stop"):
            raise ConfigurationError(
                f"on_failure must be 'park' or 'stop', not {self.on_failure!r}"
            )
        object.__setattr__(self, "aggregate_names", frozenset(names))
        if self.event_names is not None:
            object.__setattr__(self, "event_names", frozenset(self.event_names))
        object.__setattr__(self, "serializers", {n: serializers[n] for n in names})
        object.__setattr__(self, "read_models", tuple(self.read_models))
        takes = self.transactional
        if takes is None:
            takes = _takes_transaction(self.handler)
        object.__setattr__(self, "takes_transaction", takes)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempts count from 1)."""
        return float(min(self.retry_delay * 2 ** (attempt - 1), self.max_retry_delay))
