"""Validation of aggregate ids and type names, shared by the engine and every store."""

from __future__ import annotations

from eventsignal.domain.errors import InvalidAggregateId

MAX_ID_LENGTH = 200
MAX_NAME_LENGTH = 100


def validate_id(value: object) -> str:
    """Return ``value`` if it is a usable aggregate id, else raise :class:`InvalidAggregateId`."""
    if type(value) is not str:
        raise InvalidAggregateId(value, "an aggregate id must be a string")
    if not value:
        raise InvalidAggregateId(value, "an aggregate id must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidAggregateId(
            value[:40] + "...", f"{len(value)} characters, at most {MAX_ID_LENGTH} allowed"
        )
    if not value.isprintable():
        raise InvalidAggregateId(value, "an aggregate id must not hold control characters")
    return value


_VALID_NAMES: set[str] = set()  # names already checked: there are few, and stores check often


def validate_name(value: object) -> str:
    """Return ``value`` if it is a usable aggregate type name (stricter than ids)."""
    if type(value) is not str or not value:
        raise InvalidAggregateId(value, "an aggregate type name must be a non-empty string")
    if value in _VALID_NAMES:
        return value
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidAggregateId(value, f"an aggregate type name is at most {MAX_NAME_LENGTH} long")
    if not all(ch.isalnum() or ch in "_-." for ch in value):
        raise InvalidAggregateId(
            value, "an aggregate type name may hold letters, digits, '_', '-' and '.' only"
        )
    if len(_VALID_NAMES) < 1000:
        _VALID_NAMES.add(value)
    return value
