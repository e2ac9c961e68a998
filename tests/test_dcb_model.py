"""The DCB model refuses what the specification rules out, and matches as it says."""

from __future__ import annotations

import pytest

from eventsignal import ConcurrencyError, ConfigurationError, SignalError
from eventsignal.dcb import (
    AppendCondition,
    AppendConditionFailed,
    DcbEvent,
    Query,
    QueryItem,
    aggregate_tag,
)


def test_a_query_item_needs_types_or_tags() -> None:
    with pytest.raises(ConfigurationError):
        QueryItem()
    with pytest.raises(ConfigurationError):
        QueryItem(tags="course:c1")  # a string, not a collection of tags
    with pytest.raises(ConfigurationError):
        QueryItem(tags=[""])


def test_a_query_needs_an_item_unless_it_selects_all() -> None:
    with pytest.raises(ConfigurationError):
        Query([])
    assert Query.all().matches("Anything", ())
    assert not Query([QueryItem(types=["A"])]).matches("B", ())


def test_an_item_needs_one_of_its_types_and_all_of_its_tags() -> None:
    item = QueryItem(types=["A", "B"], tags=["x", "y"])
    assert item.matches("A", ("y", "x", "z"))
    assert not item.matches("C", ("x", "y"))
    assert not item.matches("A", ("x",))
    assert QueryItem(tags=["x"]).matches("Whatever", ("x",))


def test_the_union_of_queries() -> None:
    union = Query([QueryItem(types=["A"])]) | Query([QueryItem(tags=["x"])])
    assert union.matches("A", ()) and union.matches("B", ("x",))  # noqa: PT018
    assert not union.matches("B", ("y",))
    assert (Query([QueryItem(types=["A"])]) | Query.all()).everything


def test_events_and_conditions_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        DcbEvent("", b"{}")
    with pytest.raises(ConfigurationError):
        DcbEvent("A", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AppendCondition(Query.all(), after=-1)
    with pytest.raises(ConfigurationError):
        DcbEvent("A", b"{}", ["\ud800"])  # a lone surrogate no store can keep
    with pytest.raises(ConfigurationError):
        QueryItem(types=["A\x00"])
    assert DcbEvent("A", b"{}", ["x", "x", "y"]).tags == ("x", "y")


def test_a_failed_condition_is_a_concurrency_error_naming_the_condition() -> None:
    condition = AppendCondition(Query([QueryItem(tags=["seat"])]), after=7)
    error = AppendConditionFailed(condition, 9)
    assert isinstance(error, ConcurrencyError)
    assert isinstance(error, SignalError)
    assert error.condition is condition
    assert (error.after, error.position, error.expected_version) == (7, 9, 7)
    assert "after position 7" in str(error)
    assert "position 9" in str(error)


def test_an_aggregate_tag_names_its_aggregate() -> None:
    assert aggregate_tag("course", "c:1") == "course:c:1"


def test_a_failed_condition_says_what_it_selects() -> None:
    query = Query([QueryItem(types=["A", "B"], tags=["x"]), QueryItem(tags=["y"])])
    message = str(AppendConditionFailed(AppendCondition(query, after=3), 5))
    assert "type 'A' or 'B' with tags 'x'; or tags 'y'" in message
    assert "any event" in str(AppendConditionFailed(AppendCondition(Query.all())))
