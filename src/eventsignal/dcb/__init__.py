"""Dynamic consistency boundaries: decisions on the events a query selects, across streams.

``view(store)`` (or ``store.dcb``) reads by :class:`Query` and appends :class:`DcbEvent` objects
on an :class:`AppendCondition`; aggregates and DCB events share the store's one log.
"""

from eventsignal.dcb.decisions import (
    Decision,
    DecisionEngine,
    Outcome,
    Projection,
    Tagged,
    dcb_events,
)
from eventsignal.dcb.view import view
from eventsignal.domain.dcb import (
    AppendCondition,
    DcbEvent,
    Query,
    QueryItem,
    SequencedEvent,
    aggregate_tag,
)
from eventsignal.domain.errors import AppendConditionFailed
from eventsignal.stores.dcb import DcbStore

__all__ = [
    "AppendCondition",
    "AppendConditionFailed",
    "DcbEvent",
    "DcbStore",
    "Decision",
    "DecisionEngine",
    "Outcome",
    "Projection",
    "Query",
    "QueryItem",
    "SequencedEvent",
    "Tagged",
    "aggregate_tag",
    "dcb_events",
    "view",
]
