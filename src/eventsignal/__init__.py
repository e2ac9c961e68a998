"""eventsignal: event sourcing for Python, declarative, fast and safe.

Declare an aggregate type with :class:`AggregateConfig` (two plain functions and the event
classes), run it with :class:`Signal`, and store its events in any :mod:`eventsignal.stores`
backend.
"""

from eventsignal.application import Aggregate, OwnWrites, Signal
from eventsignal.domain import (
    AggregateConfig,
    AggregateExists,
    AggregateNotFound,
    CommandKeyTaken,
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventNotFound,
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
    "CommandKeyTaken",
    "CommandRejected",
    "CommandResult",
    "ConcurrencyError",
    "ConfigurationError",
    "Event",
    "EventNotFound",
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
