"""The domain layer: the event envelope, the aggregate declaration and the errors."""

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    EventNotFound,
    EventSerializationError,
    EventTooLarge,
    InvalidAggregateId,
    InvalidHandlerResult,
    NotStarted,
    SignalError,
    StoreInconsistent,
    StoreNotMigrated,
    StoreNotOpen,
    StoreUnavailable,
    TransactionEnded,
    UnknownEventType,
    VersionOutOfRange,
)
from eventsignal.domain.events import Event

__all__ = [
    "AggregateConfig",
    "AggregateExists",
    "AggregateNotFound",
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
    "SignalError",
    "StoreInconsistent",
    "StoreNotMigrated",
    "StoreNotOpen",
    "StoreUnavailable",
    "TransactionEnded",
    "UnknownEventType",
    "VersionOutOfRange",
]
