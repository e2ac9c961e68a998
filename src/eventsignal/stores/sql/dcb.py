"""What the SQL stores share for DCB: the ``dcb`` schema component and queries as SQL.

A DCB event's tags sit in ``eventsignal_tags(tag, position)``, one row per tag; an aggregate's
events are found by their implicit tag through the columns they already have (aggregate name
and id), so nothing is copied for them and a database written before DCB existed is read as
it is. ``eventsignal_events(name, position)`` serves queries by type.

A query becomes ``e.position IN (<positions of item 1> UNION <positions of item 2> ...)``: each
item starts from the index rows of one tag (or of its types) after the position asked for, and
filters them by its other tags and types, so a condition check touches only the events of its
boundary, never the whole log.

DCB reads and writes the default tenant's log alone (see :mod:`eventsignal.stores.tenancy`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eventsignal.domain.dcb import DcbEvent, Query, QueryItem, SequencedEvent, aggregate_tag
from eventsignal.stores.dcb import DCB_AGGREGATE, TAGS_KEY, split_tag, tags_of_metadata

COMPONENT = "dcb"

Param = Callable[[Any], str]  # records a value, returns its placeholder

# The default tenant's rows of ``e``, as a condition no index serves (see DEFAULT_ROWS in
# eventsignal.stores.sql.tenants): the planner starts from the tags' and types' indexes, as
# before tenants, never from every event of the default tenant by the stream key.
_OWN = "(e.tenant = '') IS TRUE"


def selection(query: Query, after: int | None, param: Param) -> str:
    """A condition on ``e`` (an ``eventsignal_events`` row of the default tenant) selecting what
    ``query`` does, after position ``after``."""
    position = after or 0

    def since() -> str:  # each placeholder is its own parameter
        return param(position)

    head = f"{_OWN} AND e.position > {since()}"
    if query.everything:
        return head
    items = " UNION ".join(_item(item, since, param) for item in query.items)
    return f"{head} AND e.position IN ({items})"


def _item(item: QueryItem, since: Callable[[], str], param: Param) -> str:
    if not item.tags:
        return (
            "SELECT position FROM eventsignal_events"
            f" WHERE name IN ({_list(item.types, param)}) AND position > {since()}"
        )
    first, *others = item.tags
    driver = _tag_positions(first, since, param)
    filters = [_has_tag(tag, param) for tag in others]
    if item.types:
        filters.append(f"x.name IN ({_list(item.types, param)})")
    if not filters:
        return driver
    return (
        f"SELECT x.position FROM ({driver}) AS c"
        " JOIN eventsignal_events AS x ON x.position = c.position"
        f" WHERE {' AND '.join(filters)}"
    )


def _tag_positions(tag: str, since: Callable[[], str], param: Param) -> str:
    found = (
        f"SELECT position FROM eventsignal_tags WHERE tag = {param(tag)} AND position > {since()}"
    )
    aggregate = split_tag(tag)
    if aggregate is not None:
        name, aggregate_id = aggregate
        found += (
            " UNION ALL SELECT position FROM eventsignal_events"
            f" WHERE tenant = '' AND aggregate_name = {param(name)}"
            f" AND aggregate_id = {param(aggregate_id)} AND position > {since()}"
        )
    return found


def _has_tag(tag: str, param: Param) -> str:
    tagged = (
        "EXISTS (SELECT 1 FROM eventsignal_tags AS t"
        f" WHERE t.tag = {param(tag)} AND t.position = x.position)"
    )
    aggregate = split_tag(tag)
    if aggregate is None:
        return tagged
    name, aggregate_id = aggregate
    return (
        f"({tagged} OR (x.aggregate_name = {param(name)}"
        f" AND x.aggregate_id = {param(aggregate_id)}))"
    )


def _list(values: tuple[str, ...] | Any, param: Param) -> str:
    return ", ".join(param(value) for value in values)


READ_COLUMNS = "e.position, e.aggregate_name, e.aggregate_id, e.name, e.data"


def sequenced_row(
    position: int,
    aggregate_name: str,
    aggregate_id: str,
    name: str,
    data: bytes,
    metadata: Mapping[str, str],
) -> SequencedEvent:
    """A row of a DCB read (``READ_COLUMNS`` and its decoded metadata) as a sequenced event."""
    if aggregate_name == DCB_AGGREGATE:
        tags = tags_of_metadata(metadata)
        if TAGS_KEY in metadata:
            metadata = {k: v for k, v in metadata.items() if k != TAGS_KEY}
    else:
        tags = (aggregate_tag(aggregate_name, aggregate_id),)
    return SequencedEvent(position, DcbEvent(name, bytes(data), tags, metadata))
