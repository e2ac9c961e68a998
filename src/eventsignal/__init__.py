"""eventsignal: event sourcing for Python, declarative, fast and safe.

Declare an aggregate type with :class:`AggregateConfig` (two plain functions and the event
classes), run it with :class:`Signal`, and store its events in any :mod:`eventsignal.stores`
backend.
"""

from eventsignal.application import Aggregate, Signal
from eventsignal.domain import (
    AggregateConfig,
    AggregateExists,
    AggregateNotFound,
    AppendConditionFailed,
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventNotFound,
    EventSerializationError,
    EventTooLarge,
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

__all__ = [
    "Aggregate",
    "AggregateConfig",
    "AggregateExists",
    "AggregateNotFound",
    "AppendConditionFailed",
    "CommandRejected",
    "ConcurrencyError",
    "ConfigurationError",
    "Event",
    "EventNotFound",
    "EventSerializationError",
    "EventTooLarge",
    "InvalidAggregateId",
    "InvalidHandlerResult",
    "NotStarted",
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
