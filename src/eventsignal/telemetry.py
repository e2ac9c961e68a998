"""Typed reports of what the engine does, for logs, metrics and traces.

Every report is a small frozen struct with a ``level`` (a :mod:`logging` level). Pass any callable
as ``Signal(telemetry=...)`` to receive them; the default, :func:`log_telemetry`, writes them to
the standard logger ``eventsignal``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import msgspec

logger = logging.getLogger("eventsignal")


class Telemetry(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every report."""

    level: ClassVar[int] = logging.DEBUG
    aggregate_name: str

    def describe(self) -> str:
        fields = " ".join(f"{k}={v!r}" for k, v in msgspec.structs.asdict(self).items())
        return f"{type(self).__name__} {fields}"


class AggregateTelemetry(Telemetry, frozen=True, kw_only=True):
    aggregate_id: str


# The pool


class CreatingAggregate(AggregateTelemetry, frozen=True, kw_only=True):
    pass


class AggregateCreated(AggregateTelemetry, frozen=True, kw_only=True):
    pass


class CannotCreateAggregate(AggregateTelemetry, frozen=True, kw_only=True):
    level: ClassVar[int] = logging.ERROR
    reason: str


class HydratingAggregate(AggregateTelemetry, frozen=True, kw_only=True):
    pass


class AggregateHydrated(AggregateTelemetry, frozen=True, kw_only=True):
    version: int
    events: int
    seconds: float


class AggregateMissing(AggregateTelemetry, frozen=True, kw_only=True):
    """An aggregate was asked for that was never created."""

    level: ClassVar[int] = logging.ERROR


class AggregateEvicted(AggregateTelemetry, frozen=True, kw_only=True):
    version: int


# Commands


class ProcessingCommand(AggregateTelemetry, frozen=True, kw_only=True):
    level: ClassVar[int] = logging.INFO
    command: str


class CommandProcessed(AggregateTelemetry, frozen=True, kw_only=True):
    level: ClassVar[int] = logging.INFO
    command: str
    version: int
    events: int


class CommandFailed(AggregateTelemetry, frozen=True, kw_only=True):
    level: ClassVar[int] = logging.ERROR
    command: str
    reason: str


class CommandConflicted(AggregateTelemetry, frozen=True, kw_only=True):
    """Another writer got there first; the aggregate caught up and the command is tried again."""

    command: str
    expected_version: int
    attempt: int


class EventsProduced(AggregateTelemetry, frozen=True, kw_only=True):
    names: tuple[str, ...]
    first_version: int


# Snapshots


class SnapshotTaken(AggregateTelemetry, frozen=True, kw_only=True):
    version: int


class SnapshotIgnored(AggregateTelemetry, frozen=True, kw_only=True):
    """A stored snapshot could not be used; the aggregate is rebuilt from its events."""

    level: ClassVar[int] = logging.WARNING
    version: int
    reason: str


class SnapshotFailed(AggregateTelemetry, frozen=True, kw_only=True):
    level: ClassVar[int] = logging.WARNING
    version: int
    error: str


# Subscribers


class TriggeringSubscribers(AggregateTelemetry, frozen=True, kw_only=True):
    events: int
    subscribers: int


class SubscriberInformed(AggregateTelemetry, frozen=True, kw_only=True):
    subscriber: str
    version: int


class SubscriberFailed(AggregateTelemetry, frozen=True, kw_only=True):
    level: ClassVar[int] = logging.ERROR
    subscriber: str
    version: int
    error: str


TelemetryHook = Callable[[Telemetry], object]


def log_telemetry(report: Telemetry) -> None:
    """The default hook: one log line per report, at the report's level."""
    if logger.isEnabledFor(report.level):
        logger.log(report.level, report.describe())
