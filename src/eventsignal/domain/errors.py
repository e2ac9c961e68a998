"""The errors eventsignal raises.

Every error derives from :class:`SignalError` and carries the facts a caller needs to act on it
(aggregate type, id, version, event name) as attributes, not only in the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventsignal.domain.dcb import AppendCondition


class SignalError(Exception):
    """Base class of every error raised by eventsignal."""


class ConfigurationError(SignalError, ValueError):
    """Arguments or settings that cannot work (together); the message says what to change."""


class NotStarted(SignalError):
    """A :class:`~eventsignal.Signal` or a runner used before it started or after it stopped."""


class StoreNotOpen(SignalError):
    """A store used before ``open()``, or after its last ``close()``."""


class StoreNotMigrated(SignalError):
    """The store's tables are missing, or at a schema version this code does not know.

    ``found`` is the version in the database (0: none), ``expected`` the one this code needs;
    a database newer than the code asks for an upgrade of eventsignal, an older one for
    ``eventsignal migrate``.
    """

    def __init__(self, message: str, *, component: str, found: int, expected: int) -> None:
        super().__init__(message)
        self.component = component
        self.found = found
        self.expected = expected


class StoreInconsistent(SignalError):
    """The store answered something its contract rules out (a gap in an aggregate's versions,
    a message missing from a stream): a damaged store or a bug, never a passing outage."""


class TransactionEnded(SignalError):
    """A transaction used after its ``async with`` block ended."""


class EventNotFound(SignalError, LookupError):
    """No event is stored at the position asked for."""

    def __init__(self, position: int) -> None:
        super().__init__(f"no event is stored at position {position}")
        self.position = position


class VersionOutOfRange(SignalError, ValueError):
    """An aggregate was asked for a version it never had."""

    def __init__(self, aggregate_name: str, aggregate_id: str, version: int, latest: int) -> None:
        super().__init__(
            f"{aggregate_name} {aggregate_id!r} has versions 0 to {latest}, not {version}"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.version = version
        self.latest = latest


class InvalidAggregateId(SignalError, ValueError):
    """An aggregate id (or aggregate type name) is empty, too long or not a string."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"invalid aggregate id {value!r}: {reason}")
        self.value = value
        self.reason = reason


class CommandRejected(SignalError):
    """The command handler refused the command; nothing was stored.

    Raise it from a command handler with a human-readable reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.aggregate_name: str | None = None
        self.aggregate_id: str | None = None

    def __str__(self) -> str:
        if self.aggregate_id is None:
            return self.reason
        return f"{self.aggregate_name} {self.aggregate_id!r} rejected the command: {self.reason}"


class AggregateExists(SignalError):
    """An aggregate with this id was created before."""

    def __init__(self, aggregate_name: str, aggregate_id: str) -> None:
        super().__init__(f"{aggregate_name} {aggregate_id!r} already exists")
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id


class AggregateNotFound(SignalError):
    """No aggregate with this id was ever created."""

    def __init__(self, aggregate_name: str, aggregate_id: str) -> None:
        super().__init__(f"{aggregate_name} {aggregate_id!r} not found")
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id


class ConcurrencyError(SignalError):
    """Another writer appended to the aggregate since the version this writer expected."""

    def __init__(
        self,
        aggregate_name: str,
        aggregate_id: str,
        expected_version: int,
        actual_version: int | None = None,
    ) -> None:
        actual = "" if actual_version is None else f", found version {actual_version}"
        super().__init__(
            f"{aggregate_name} {aggregate_id!r}: expected version {expected_version}{actual}"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class AppendConditionFailed(ConcurrencyError):
    """An append's condition failed: an event its query selects was stored after the position
    the decision read (``after``; ``None``: any such event). Nothing was stored.

    DCB events belong to no aggregate: ``aggregate_name`` and ``aggregate_id`` are empty and
    ``expected_version`` is ``after`` (0 for none). ``condition`` is the condition that failed.
    """

    def __init__(self, condition: AppendCondition, position: int | None = None) -> None:
        after = condition.after
        since = "at all" if after is None else f"after position {after}"
        found = "" if position is None else f" (position {position})"
        SignalError.__init__(
            self,
            f"append condition failed: an event matching {condition.fail_if_events_match} is "
            f"stored {since}{found}; nothing was stored",
        )
        self.aggregate_name = ""
        self.aggregate_id = ""
        self.expected_version = after or 0
        self.actual_version = None
        self.condition = condition
        self.after = after
        self.position = position


class EventSerializationError(SignalError):
    """An event could not be encoded or decoded.

    Names the aggregate, the version and the event type so the faulty row can be found; a stored
    event that cannot be read also names its global ``position`` (0 for an event not yet stored).
    """

    def __init__(
        self,
        message: str,
        *,
        aggregate_name: str,
        aggregate_id: str,
        version: int,
        event_name: str,
        position: int = 0,
    ) -> None:
        where = f" at position {position}" if position else ""
        super().__init__(
            f"{aggregate_name} {aggregate_id!r} version {version} event {event_name!r}{where}: "
            f"{message}"
        )
        self.reason = message
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.version = version
        self.event_name = event_name
        self.position = position


class UnknownEventType(EventSerializationError):
    """A stored event names a type that is not registered in the aggregate config."""


class InvalidHandlerResult(SignalError, TypeError):
    """A command handler returned something other than a list of events."""

    def __init__(self, aggregate_name: str, aggregate_id: str, command: str, result: object):
        super().__init__(
            f"{aggregate_name} {aggregate_id!r}: the handler of {command} must return a list of "
            f"events (empty for none), not {type(result).__name__}"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.command = command
        self.result_type = type(result)


class EventTooLarge(SignalError, ValueError):
    """A command's events are larger than the store accepts in one write; nothing was stored.

    Unlike :class:`StoreUnavailable` this is permanent: the same events fail the same way every
    time, so retrying is pointless. Names the largest event of the write (``version``,
    ``event_name``), the write's ``size`` in bytes and the store's ``limit``.
    """

    def __init__(
        self,
        aggregate_name: str,
        aggregate_id: str,
        version: int,
        event_name: str,
        *,
        size: int,
        limit: int,
    ) -> None:
        super().__init__(
            f"{aggregate_name} {aggregate_id!r} version {version} event {event_name!r} is too "
            f"large to store: the write takes {size:,} bytes, the store accepts at most {limit:,}"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.version = version
        self.event_name = event_name
        self.size = size
        self.limit = limit


class SubscriptionTimeout(SignalError):
    """A subscription did not reach a position in time (read-your-writes waited in vain)."""

    def __init__(self, subscription: str, position: int, reached: int, timeout: float) -> None:
        super().__init__(
            f"subscription {subscription!r} reached position {reached}, not {position}, "
            f"within {timeout:g} s"
        )
        self.subscription = subscription
        self.position = position
        self.reached = reached
        self.timeout = timeout


class HandlerTooSlow(SignalError):
    """A handler kept its transaction idle past the server's limit, and the server ended it.

    On PostgreSQL a subscription's transaction may go without SQL for at most twice ``lease_ttl``
    (so that a paused process cannot hold its locks); batches are cut to fit, so only a single
    event taking that long ends up here. The event is retried, then parked.
    """

    def __init__(self, held: float, limit: float) -> None:
        super().__init__(
            f"the handler held its transaction for {held:.1f} s and the server ended it, since a "
            f"subscription's transaction may send no SQL for at most {limit:g} s (2 x lease_ttl): "
            "make the handler faster on this event, or raise the subscription's lease_ttl"
        )
        self.held = held
        self.limit = limit


class StateConflict(SignalError):
    """A subscription-state commit lost a compare-and-set: state it read was changed meanwhile.

    Nothing of the transaction was stored. A runner treats it as a lost lease: it re-reads its
    leases and carries on from the checkpoints as stored (NATS reports conflicts this way, at
    commit, where a SQL store would have made the writer wait).
    """


class StoreUnavailable(SignalError):
    """The store cannot be reached; nothing was acknowledged."""


class BrokerUnavailable(StoreUnavailable):
    """A message broker or endpoint cannot be reached, or did not confirm in time.

    Like a store outage it is never a handler's fault: a subscription retries it, slower and
    slower, without parking anything, and its checkpoint stays where it was.
    """


class EventRefused(SignalError):
    """A broker or endpoint refused a published event (unroutable, too large, a 4xx answer).

    Unlike :class:`BrokerUnavailable` it is the event's own: retried, then parked.
    """


class IdempotencyKeyTooLong(SignalError, ValueError):
    """An idempotency key longer than stores keep (``limit`` characters); nothing ran."""

    def __init__(self, aggregate_name: str, aggregate_id: str, key: str, limit: int) -> None:
        super().__init__(
            f"{aggregate_name} {aggregate_id!r}: idempotency key {key[:40]!r}"
            f"{'...' if len(key) > 40 else ''} has {len(key)} characters, at most {limit} allowed"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.key = key
        self.limit = limit


class IdempotencyKeyReused(SignalError):
    """An idempotency key already recorded for this aggregate came with a different command.

    The first command's effect stands and nothing ran: a client bug (one key for two
    requests) that a retry would not fix.
    """

    def __init__(self, aggregate_name: str, aggregate_id: str, key: str, command: str) -> None:
        super().__init__(
            f"{aggregate_name} {aggregate_id!r}: idempotency key {key!r} was recorded with "
            f"another command than this {command}"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.key = key
        self.command = command


class CommandKeyTaken(SignalError):
    """A store refused to record an idempotency key it holds already for the aggregate: another
    writer recorded the same command first. Nothing of this append was stored; :class:`Signal`
    answers the caller as for any repeat."""

    def __init__(self, aggregate_name: str, aggregate_id: str, key: str) -> None:
        super().__init__(f"{aggregate_name} {aggregate_id!r}: idempotency key {key!r} is taken")
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.key = key


class StreamClosed(SignalError):
    """The aggregate's stream was archived or deleted: it takes no more commands."""

    state = "closed"

    def __init__(self, aggregate_name: str, aggregate_id: str) -> None:
        super().__init__(self._message(aggregate_name, aggregate_id))
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id

    def _message(self, aggregate_name: str, aggregate_id: str) -> str:
        return f"{aggregate_name} {aggregate_id!r} is {self.state}: it is read-only"


class AggregateArchived(StreamClosed):
    """The aggregate's events are in cold storage; ``restore`` brings them back."""

    state = "archived"

    def _message(self, aggregate_name: str, aggregate_id: str) -> str:
        return (
            f"{aggregate_name} {aggregate_id!r} is archived: it takes no commands until it is "
            "restored"
        )


class AggregateDeleted(StreamClosed):
    """The aggregate was deleted for good; its id can never be used again."""

    state = "deleted"

    def _message(self, aggregate_name: str, aggregate_id: str) -> str:
        return f"{aggregate_name} {aggregate_id!r} was deleted: its id can never be used again"


class HistoryTruncated(SignalError, LookupError):
    """A state or rebuild needs events that ``truncate_before`` removed.

    ``version`` is the version asked for (``None`` for a moment older than every event kept);
    ``first_kept`` the first version still stored; ``earliest`` the first version whose state
    can still be computed (that of the snapshot the truncation kept), when known.
    """

    def __init__(
        self,
        aggregate_name: str,
        aggregate_id: str,
        version: int | None,
        first_kept: int,
        earliest: int | None = None,
    ) -> None:
        since = "" if earliest is None else f" (states from version {earliest} on are known)"
        which = "at that moment" if version is None else f"at version {version}"
        super().__init__(
            f"{aggregate_name} {aggregate_id!r}: the state {which} is gone, events "
            f"before version {first_kept} were truncated{since}"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.version = version
        self.first_kept = first_kept
        self.earliest = earliest


class NoUsableSnapshot(SignalError):
    """``truncate_before`` refused: no snapshot the rebuilds could start from after it."""

    def __init__(self, aggregate_name: str, aggregate_id: str, version: int, reason: str) -> None:
        super().__init__(
            f"{aggregate_name} {aggregate_id!r}: cannot truncate before version {version}: "
            f"{reason}; take a snapshot at version {version - 1} or later first"
        )
        self.aggregate_name = aggregate_name
        self.aggregate_id = aggregate_id
        self.version = version


class LifecycleNotSupported(SignalError, NotImplementedError):
    """The store cannot archive, restore, delete or truncate streams."""

    def __init__(
        self, store: str, operation: str, reason: str = "its log cannot be rewritten"
    ) -> None:
        super().__init__(f"{store} does not support {operation}: {reason}")
        self.store = store
        self.operation = operation


class RewriteNotSupported(SignalError, NotImplementedError):
    """The store cannot rewrite stored payloads in place (re-encryption needs it)."""

    def __init__(self, store: str, operation: str, advice: str = "") -> None:
        message = f"{store} does not support {operation}: its stored payloads cannot be rewritten"
        super().__init__(f"{message}; {advice}" if advice else message)
        self.store = store
        self.operation = operation
