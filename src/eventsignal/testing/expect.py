"""``raises``: the one assertion helper the compliance suites need, without a test framework.

The suites run under pytest, unittest or a plain script alike, so importing
:mod:`eventsignal.testing` must not need pytest (a test extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

E = TypeVar("E", bound=BaseException)


class Raised(Generic[E]):
    """What a :func:`raises` block caught, as ``.value`` once the block has ended."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: E | None = None

    @property
    def value(self) -> E:
        if self._value is None:
            raise AssertionError("the block has not raised (yet)")
        return self._value


@contextmanager
def raises(expected: type[E]) -> Iterator[Raised[E]]:
    """Fail with :class:`AssertionError` unless the block raises ``expected`` (or a subclass)."""
    raised: Raised[E] = Raised()
    try:
        yield raised
    except expected as exc:
        raised._value = exc
    else:
        raise AssertionError(f"expected {expected.__name__}, nothing was raised")
