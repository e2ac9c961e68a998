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
        """One line for a log: the report's name and its fields."""
        fields = " ".join(f"{k}={v!r}" for k, v in msgspec.structs.asdict(self).items())
        return f"{type(self).__name__} {fields}"


class AggregateTelemetry(Telemetry, frozen=True, kw_only=True):
    """A report about one aggregate."""

    aggregate_id: str


# The pool


class CreatingAggregate(AggregateTelemetry, frozen=True, kw_only=True):
    """``Signal.create`` is recording a new aggregate."""


class AggregateCreated(AggregateTelemetry, frozen=True, kw_only=True):
    """A new aggregate is recorded in the store and live in the pool."""


class CannotCreateAggregate(AggregateTelemetry, frozen=True, kw_only=True):
    """A creation stored nothing: the id was taken, or the genesis command failed (``reason``)."""

    level: ClassVar[int] = logging.ERROR
    reason: str


class HydratingAggregate(AggregateTelemetry, frozen=True, kw_only=True):
    """An aggregate is being rebuilt from its snapshot and events."""


class AggregateHydrated(AggregateTelemetry, frozen=True, kw_only=True):
    """An aggregate was rebuilt: ``events`` applied in ``seconds``, now at ``version``."""

    version: int
    events: int
    seconds: float


class AggregateMissing(AggregateTelemetry, frozen=True, kw_only=True):
    """An aggregate was asked for that was never created."""

    level: ClassVar[int] = logging.ERROR


class AggregateEvicted(AggregateTelemetry, frozen=True, kw_only=True):
    """The pool evicted an idle aggregate to stay within its size."""

    version: int


# Commands


class ProcessingCommand(AggregateTelemetry, frozen=True, kw_only=True):
    """A command arrived for an aggregate."""

    level: ClassVar[int] = logging.INFO
    command: str


class CommandProcessed(AggregateTelemetry, frozen=True, kw_only=True):
    """A command's ``events`` are stored; the aggregate is now at ``version``."""

    level: ClassVar[int] = logging.INFO
    command: str
    version: int
    events: int


class CommandFailed(AggregateTelemetry, frozen=True, kw_only=True):
    """A command stored nothing: rejected, failed, or out of conflict retries (``reason``)."""

    level: ClassVar[int] = logging.ERROR
    command: str
    reason: str


class CommandConflicted(AggregateTelemetry, frozen=True, kw_only=True):
    """Another writer got there first; the aggregate caught up and the command is tried again."""

    command: str
    expected_version: int
    attempt: int


class EventsProduced(AggregateTelemetry, frozen=True, kw_only=True):
    """The names of the events a command stored, from ``first_version`` on."""

    names: tuple[str, ...]
    first_version: int


# Snapshots


class SnapshotTaken(AggregateTelemetry, frozen=True, kw_only=True):
    """A snapshot of the state at ``version`` was stored."""

    version: int


class SnapshotIgnored(AggregateTelemetry, frozen=True, kw_only=True):
    """A stored snapshot could not be used; the aggregate is rebuilt from its events."""

    level: ClassVar[int] = logging.WARNING
    version: int
    reason: str


class SnapshotFailed(AggregateTelemetry, frozen=True, kw_only=True):
    """Taking a snapshot failed (``error``); commands go on, and a later one tries again."""

    level: ClassVar[int] = logging.WARNING
    version: int
    error: str


# Subscribers


class TriggeringSubscribers(AggregateTelemetry, frozen=True, kw_only=True):
    """A command's ``events`` were queued for the in-process ``subscribers``."""

    events: int
    subscribers: int


class SubscriberInformed(AggregateTelemetry, frozen=True, kw_only=True):
    """An in-process subscriber handled the event at ``version``."""

    subscriber: str
    version: int


class SubscriberFailed(AggregateTelemetry, frozen=True, kw_only=True):
    """An in-process subscriber raised ``error`` on the event at ``version``; the others go on."""

    level: ClassVar[int] = logging.ERROR
    subscriber: str
    version: int
    error: str


TelemetryHook = Callable[[Telemetry], object]


def log_telemetry(report: Telemetry) -> None:
    """The default hook: one log line per report, at the report's level."""
    if logger.isEnabledFor(report.level):
        logger.log(report.level, report.describe())
