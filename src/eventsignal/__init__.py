"""eventsignal: event sourcing for Python, declarative, fast and safe.

Declare an aggregate type with :class:`AggregateConfig` (two plain functions and the event
classes), run it with :class:`Signal`, and store its events in any :mod:`eventsignal.stores`
backend.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventsignal.application import Aggregate, OwnWrites, Signal
    from eventsignal.domain import (
        AggregateConfig,
        AggregateExists,
        AggregateNotFound,
        AppendConditionFailed,
        BrokerUnavailable,
        CommandKeyTaken,
        CommandRejected,
        ConcurrencyError,
        ConfigurationError,
        Event,
        EventNotFound,
        EventRefused,
        EventSerializationError,
        EventTooLarge,
        IdempotencyKeyReused,
        IdempotencyKeyTooLong,
        InvalidAggregateId,
        InvalidHandlerResult,
        NotStarted,
        SignalError,
        StateConflict,
        StoreInconsistent,
        StoreNotMigrated,
        StoreNotOpen,
        StoreUnavailable,
        TransactionEnded,
        UnknownEventType,
        VersionOutOfRange,
    )
    from eventsignal.idempotency import CommandResult
    from eventsignal.stores.idempotency import KeyRetention


__all__ = [
    "Aggregate",
    "AggregateConfig",
    "AggregateExists",
    "AggregateNotFound",
    "AppendConditionFailed",
    "BrokerUnavailable",
    "CommandKeyTaken",
    "CommandRejected",
    "CommandResult",
    "ConcurrencyError",
    "ConfigurationError",
    "Event",
    "EventNotFound",
    "EventRefused",
    "EventSerializationError",
    "EventTooLarge",
    "IdempotencyKeyReused",
    "IdempotencyKeyTooLong",
    "InvalidAggregateId",
    "InvalidHandlerResult",
    "KeyRetention",
    "NotStarted",
    "OwnWrites",
    "Signal",
    "SignalError",
    "StateConflict",
    "StoreInconsistent",
    "StoreNotMigrated",
    "StoreNotOpen",
    "StoreUnavailable",
    "TransactionEnded",
    "UnknownEventType",
    "VersionOutOfRange",
]
__version__ = "0.1.0"

# Where each public name lives. They are imported on first use, so that importing a submodule
# (the pytest plugin, the command line) does not load the whole library.
_HOMES = {
    "Aggregate": "eventsignal.application",
    "OwnWrites": "eventsignal.application",
    "Signal": "eventsignal.application",
    "CommandResult": "eventsignal.idempotency",
    "KeyRetention": "eventsignal.stores.idempotency",
}


if not TYPE_CHECKING:  # for type checkers the names above are plain imports

    def __getattr__(name: str) -> Any:
        if name not in __all__:
            raise AttributeError(f"module 'eventsignal' has no attribute {name!r}")
        value = getattr(import_module(_HOMES.get(name, "eventsignal.domain")), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
