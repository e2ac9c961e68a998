"""Personal fields, declared on the event classes themselves.

``email: Annotated[str, Personal(subject="customer_id")]`` says that ``email`` is personal data
of the data subject whose id is in the event's ``customer_id`` field. Such values are stored
encrypted under a key of that subject (see :mod:`eventsignal.privacy`); once the subject is
forgotten the key is gone and readers see the field's ``redacted`` value instead.

This module only reads the declarations (dataclasses, msgspec Structs, pydantic models); it
knows nothing of keys or stores.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

import msgspec

from eventsignal.domain.errors import ConfigurationError, SignalError

_UNSET: Any = object()

METADATA_PREFIX = "eventsignal.personal."
"""Metadata keys of sealed personal values start with this, followed by the subject digest."""


class Personal:
    """Marks a field as personal data of the subject named by the event's field ``subject``.

    ``redacted`` is what readers see once the subject is forgotten; by default an empty value
    of the field's type (``""``, ``0``, ``0.0``, ``False``, ``b""``, empty collections, and
    ``None`` for an optional field). Other types must say what they become.
    """

    __slots__ = ("redacted", "subject")

    def __init__(self, subject: str, *, redacted: Any = _UNSET) -> None:
        if not isinstance(subject, str) or not subject:
            raise ConfigurationError("Personal(subject=...) names the field holding the subject")
        self.subject = subject
        self.redacted = redacted

    def __repr__(self) -> str:
        return f"Personal(subject={self.subject!r})"


class PersonalField(msgspec.Struct, frozen=True):
    """One personal field of an event class, as its JSON spells it."""

    name: str  # the key in the event's JSON
    subject: str  # the JSON key of the field holding the subject's id
    subject_attribute: str  # the same field, as an attribute of the event object
    redacted: Any  # the redaction value, in its JSON form


class PersonalDataLocked(SignalError):
    """An event with personal data was decoded before the keys of its subjects were loaded.

    Every read path loads them first (``await serializer.personal.unlock(store, records)``);
    meeting this error means a read path that forgot to, which is a bug: reading on would
    show redacted values for subjects that were never forgotten.
    """


_EMPTY: Mapping[type, Any] = {
    str: "",
    int: 0,
    float: 0.0,
    bool: False,
    bytes: b"",
    list: [],
    dict: {},
    set: [],
    frozenset: [],
    tuple: [],
}


def _default_redaction(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        if type(None) in get_args(annotation):
            return None
        return _UNSET
    base = origin if origin is not None else annotation
    return _EMPTY.get(base, _UNSET) if isinstance(base, type) else _UNSET


def _hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # forward references that do not resolve: no marker can be read
        return {}


def _marker(annotation: Any) -> tuple[Personal | None, Any]:
    if get_origin(annotation) is typing.Annotated:
        base, *extras = get_args(annotation)
        for extra in extras:
            if isinstance(extra, Personal):
                return extra, base
    return None, annotation


def _json_names(cls: type[Any]) -> dict[str, str]:
    """Attribute name -> JSON key, for the classes that may rename (msgspec Structs)."""
    if isinstance(cls, type) and issubclass(cls, msgspec.Struct):
        return {f.name: f.encode_name for f in msgspec.structs.fields(cls)}
    return {}


def personal_fields(cls: type[Any]) -> tuple[PersonalField, ...]:
    """The personal fields an event class declares (none: an empty tuple).

    Raises :class:`ConfigurationError` for a declaration that cannot work: a subject field the
    class lacks, a subject that is itself personal, or a type without a default redaction.
    """
    found: list[tuple[str, Personal, Any]] = []
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, Mapping):  # pydantic keeps Annotated extras in the field info
        for name, info in model_fields.items():
            for extra in getattr(info, "metadata", ()):
                if isinstance(extra, Personal):
                    found.append((name, extra, info.annotation))
        names = set(model_fields)
    else:
        hints = _hints(cls)
        if dataclasses.is_dataclass(cls):
            names = {f.name for f in dataclasses.fields(cls)}
        elif isinstance(cls, type) and issubclass(cls, msgspec.Struct):
            names = set(cls.__struct_fields__)
        else:
            names = set(hints)
        for name in names:
            marker, base = _marker(hints.get(name))
            if marker is not None:
                found.append((name, marker, base))
    if not found:
        return ()
    renamed = _json_names(cls)
    personal_names = {name for name, _, _ in found}
    fields = []
    for name, marker, base in sorted(found, key=lambda item: item[0]):
        where = f"{cls.__name__}.{name}"
        if marker.subject not in names:
            raise ConfigurationError(
                f"{where} is personal data of subject {marker.subject!r}, "
                f"which is not a field of {cls.__name__}"
            )
        if marker.subject in personal_names:
            raise ConfigurationError(
                f"{where}: the subject field {marker.subject!r} cannot itself be personal"
            )
        redacted = marker.redacted
        if redacted is _UNSET:
            redacted = _default_redaction(base)
            if redacted is _UNSET:
                raise ConfigurationError(
                    f"{where}: no default redaction for {base!r}; say Personal(..., redacted=...)"
                )
        fields.append(
            PersonalField(
                name=renamed.get(name, name),
                subject=renamed.get(marker.subject, marker.subject),
                subject_attribute=marker.subject,
                redacted=msgspec.to_builtins(redacted),
            )
        )
    return tuple(fields)


def declares_personal(event_types: Mapping[str, type[Any]]) -> bool:
    """Whether any of these event classes has a personal field."""
    return any(personal_fields(cls) for cls in event_types.values())
