"""The domain layer: the event envelope, the aggregate declaration and the errors."""

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import (
    AggregateExists,
    AggregateNotFound,
    CommandRejected,
    ConcurrencyError,
    EventSerializationError,
    EventTooLarge,
    InvalidAggregateId,
    InvalidHandlerResult,
    SignalError,
    StoreUnavailable,
    UnknownEventType,
)
from eventsignal.domain.events import Event

__all__ = [
    "AggregateConfig",
    "AggregateExists",
    "AggregateNotFound",
    "CommandRejected",
    "ConcurrencyError",
    "Event",
    "EventSerializationError",
    "EventTooLarge",
    "InvalidAggregateId",
    "InvalidHandlerResult",
    "SignalError",
    "StoreUnavailable",
    "UnknownEventType",
]
