"""Turning user objects (events, snapshot states) into bytes and back.

JSON through msgspec by default: dataclasses, msgspec Structs, attrs classes and pydantic models
all encode without registration. A :class:`Transcoder` wraps the bytes for users who need
encryption or compression at rest. Rows written by older revisions of an event class pass
through the registered upcasters on their way in; current rows take the direct path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import msgspec.inspect

from eventsignal.domain.errors import (
    ConfigurationError,
    EventSerializationError,
    UnknownEventType,
)
from eventsignal.domain.events import Event
from eventsignal.domain.evolution import (
    Payload,
    Upcast,
    Upcaster,
    index_upcasters,
    split_stored_name,
    stored_name,
)
from eventsignal.domain.personal import METADATA_PREFIX, PersonalDataLocked, declares_personal
from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.lifecycle import DELETION_EVENT, decode_deletion


class Transcoder(Protocol):
    """A reversible transformation of encoded bytes (encryption, compression).

    One with a true ``binds_context`` attribute is called as ``encode(data, context)`` and
    ``decode(data, context)`` for events, ``context`` naming the row (aggregate type and id,
    version, event name), so that an encryption can bind each payload to its row.
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


def row_context(
    aggregate_name: str, aggregate_id: str, version: int, event_name: str, tenant: str = ""
) -> bytes:
    """The identity of an event row, as a binding transcoder is given it; a tenant's rows name
    their tenant too (the default tenant's stay as they always were), so a payload copied into
    another tenant's stream of the same id fails to decode."""
    row = f"{aggregate_name}\0{aggregate_id}\0{version}\0{event_name}"
    return (f"{row}\0{tenant}" if tenant else row).encode()


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic v2 models
    if dump is not None:
        return dump(mode="json")
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
#: User objects (dataclasses, Structs, pydantic models) to JSON bytes, as events are stored.
encode_json = _encoder.encode
# ``bytes.find`` rather than ``in``: for ``in`` CPython first tries the needle as an integer and
# clears the resulting error, which costs more than the search itself on a short event.
_find = bytes.find


def bytes_decoder(cls: type[Any]) -> Callable[[bytes], Any]:
    """A fast ``bytes -> cls`` decoder for a dataclass, msgspec Struct or pydantic model."""
    validate = getattr(cls, "model_validate_json", None)
    if callable(validate):
        return validate  # type: ignore[no-any-return]
    return msgspec.json.Decoder(cls).decode


def object_converter(cls: type[Any]) -> Callable[[Payload], Any]:
    """A ``dict -> cls`` converter, for payloads that went through upcasters."""
    validate = getattr(cls, "model_validate", None)
    if callable(validate):
        return validate  # type: ignore[no-any-return]
    return lambda payload: msgspec.convert(payload, cls)


def envelope(record: StoredEvent, data: Any) -> Event[Any]:
    """The event handed to handlers: a stored event's envelope around its decoded data."""
    return Event(
        id=record.id,
        aggregate_name=record.aggregate_name,
        aggregate_id=record.aggregate_id,
        version=record.version,
        name=record.name,
        timestamp=record.timestamp,
        position=record.position,
        data=data,
        metadata=record.metadata,
        tenant=record.tenant,
    )


class _Unconfigured:
    """What a serializer of event classes with personal fields holds when it was built without
    :mod:`eventsignal.privacy`: it refuses to write them, and to read their personal values."""

    plans: Mapping[type[Any], Any] = {}

    def __init__(self, aggregate_name: str) -> None:
        self.message = (
            f"the events of {aggregate_name!r} have personal fields: build the serializer "
            "with personal=eventsignal.privacy.personal_data(...) (Signal does)"
        )

    async def prepare(self, store: EventStore, events: Any, aggregate_id: str) -> None:
        raise ConfigurationError(self.message)

    async def unlock(self, store: EventStore, records: Any) -> None:
        return None

    def open(self, stored: StoredEvent, data: bytes) -> Any:
        if any(key.startswith(METADATA_PREFIX) for key in stored.metadata):
            raise PersonalDataLocked(self.message)
        return None


class EventSerializer:
    """Encodes and decodes the events of one aggregate type, by their stored names.

    ``personal`` (from :func:`eventsignal.privacy.personal_data`) seals the personal fields of
    events; it is ``None`` when no event class declares any, and then costs nothing.
    """

    def __init__(
        self,
        aggregate_name: str,
        event_types: Mapping[str, type[Any]],
        transcoder: Transcoder | None = None,
        upcasters: Sequence[Upcaster] = (),
        *,
        personal: Any = None,
    ) -> None:
        self.aggregate_name = aggregate_name
        if personal is None and declares_personal(event_types):
            personal = _Unconfigured(aggregate_name)
        self.personal: Any = personal
        self._names = {cls: name for name, cls in event_types.items()}
        self._decoders = {name: bytes_decoder(cls) for name, cls in event_types.items()}
        # The deletion record (stream lifecycle) reaches every reader of this aggregate type.
        self._decoders.setdefault(DELETION_EVENT, decode_deletion)
        # What ``encode`` needs of a class, in one lookup: its stored name and its decoder.
        self._writers = {
            cls: (name, self._decoders[name], _may_hold_floats(cls))
            for name, cls in event_types.items()
        }
        self._converters = {name: object_converter(cls) for name, cls in event_types.items()}
        self._upcasters: dict[tuple[str, int], Upcast] = index_upcasters(upcasters)
        self._transcoder = transcoder
        self._binds = bool(getattr(transcoder, "binds_context", False))
        # A transcoder of one codec per tenant (eventsignal.codecs.PerTenant) is asked for the
        # tenant's codec row by row.
        self._routes = hasattr(transcoder, "for_tenant")

    def name_of(self, event: object) -> str | None:
        """The stored name of an event instance, or ``None`` if its class is not registered."""
        return self._names.get(type(event))

    def encode(
        self, event: object, *, aggregate_id: str, version: int, tenant: str = ""
    ) -> tuple[str, bytes]:
        """Return the stored name and the encoded bytes of a user event (of ``tenant``'s
        stream)."""
        writer = self._writers.get(type(event))
        if writer is None:
            raise UnknownEventType(
                f"{type(event).__name__} is not one of the events declared in the aggregate "
                f"config ({', '.join(self._names.values()) or 'none'})",
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                event_name=type(event).__name__,
            )
        name, read_back, floats = writer
        try:
            data = _encoder.encode(event)
            if floats and _find(data, b"null") >= 0:
                _refuse_non_finite(event)
            # What is stored must read back: a field whose value does not match its declared
            # type would be acknowledged now and fail every later load.
            read_back(data)
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise EventSerializationError(
                f"cannot be stored: {_first_line(exc)}",
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                event_name=name,
            ) from exc
        transcoder: Any = self._transcoder
        if transcoder is not None:
            if self._routes:
                transcoder = transcoder.for_tenant(tenant)
            if self._binds:
                context = row_context(self.aggregate_name, aggregate_id, version, name, tenant)
                data = transcoder.encode(data, context)
            else:
                data = transcoder.encode(data)
        return name, data

    def encode_sealed(
        self, event: object, *, aggregate_id: str, version: int, tenant: str = ""
    ) -> tuple[str, bytes, dict[str, str] | None]:
        """:meth:`encode` for an aggregate type with personal fields: also the metadata that
        holds their values, encrypted (``None`` for an event without personal fields).

        The keys of the event's subjects must be prepared (``await personal.prepare(...)``).
        """
        fields = self.personal.plans.get(type(event))
        if not fields:
            encoded = self.encode(event, aggregate_id=aggregate_id, version=version, tenant=tenant)
            return (*encoded, None)
        name, read_back, floats = self._writers[type(event)]
        try:
            data = _encoder.encode(event)
            if floats and _find(data, b"null") >= 0:
                _refuse_non_finite(event)
            read_back(data)
            context = row_context(self.aggregate_name, aggregate_id, version, name, tenant)
            where = f"{self.aggregate_name} {aggregate_id!r} version {version} ({name})"
            data, sealed = self.personal.seal(fields, data, context, where, tenant)
            read_back(data)  # the redacted payload must read back as well
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise EventSerializationError(
                f"cannot be stored: {_first_line(exc)}",
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                event_name=name,
            ) from exc
        transcoder: Any = self._transcoder
        if transcoder is not None:
            if self._routes:
                transcoder = transcoder.for_tenant(tenant)
            data = transcoder.encode(data, context) if self._binds else transcoder.encode(data)
        return name, data, sealed

    def direct_decoders(self) -> Mapping[str, Callable[[bytes], Any]]:
        """``bytes -> event`` by stored name, for the rows whose stored bytes are the event's
        JSON as it is: empty when a transcoder or personal fields come in between.

        A rebuild decodes most rows through these without a call to :meth:`decode_all`; a row
        of a name not in here (an older revision, the deletion record), a flagged row or one
        these fail on goes through :meth:`decode_all`, which upcasts it or names what is wrong.
        """
        if self._transcoder is not None or self.personal is not None:
            return {}
        return {name: self._decoders[name] for name in self._converters}

    def decode(self, stored: StoredEvent) -> Any:
        """The user event held in a stored event (see :meth:`decode_all` for split events)."""
        events = self.decode_all(stored)
        if len(events) != 1:
            raise self._error(stored, f"upcasters split it into {len(events)} events")
        return events[0]

    def decode_all(self, stored: StoredEvent) -> list[Any]:
        """The user events held in one stored event: one, unless an upcaster split it."""
        if stored.defect is not None:
            raise self._error(stored, stored.defect)
        decode = self._decoders.get(stored.name)
        try:
            data = stored.data
            transcoder: Any = self._transcoder
            if transcoder is not None:
                if self._routes:
                    transcoder = transcoder.for_tenant(stored.tenant)
                if self._binds:
                    context = row_context(
                        stored.aggregate_name,
                        stored.aggregate_id,
                        stored.version,
                        stored.name,
                        stored.tenant,
                    )
                    data = transcoder.decode(data, context)
                else:
                    data = transcoder.decode(data)
            personal = self.personal
            if personal is not None and stored.metadata:
                payload = personal.open(stored, data)
                if payload is not None:
                    if decode is not None:
                        return [decode(_encoder.encode(payload))]
                    return self._upcast(stored, payload)
            if decode is not None:
                return [decode(data)]
            return self._upcast(stored, msgspec.json.decode(data))
        except (EventSerializationError, PersonalDataLocked):
            raise
        except Exception as exc:
            if stored.name == DELETION_EVENT:  # written by the store, not by this transcoder
                return [decode_deletion(stored.data)]
            raise self._error(stored, f"stored data cannot be decoded: {exc}") from exc

    def _upcast(self, stored: StoredEvent, payload: Payload) -> list[Any]:
        pending = [(*split_stored_name(stored.name), payload)]
        done: list[Any] = []
        while pending:
            name, revision, data = pending.pop(0)
            current = stored_name(name, revision)
            convert = self._converters.get(current)
            if convert is not None:
                done.append(convert(data))
                continue
            upcast = self._upcasters.get((name, revision))
            if upcast is None:
                if current == stored.name:
                    raise UnknownEventType(
                        "no event class is registered under this name, and no upcaster reads it",
                        aggregate_name=stored.aggregate_name,
                        aggregate_id=stored.aggregate_id,
                        version=stored.version,
                        event_name=stored.name,
                        position=stored.position,
                    )
                raise self._error(stored, f"no upcaster reads {name!r} revision {revision}")
            result = upcast(data)
            if isinstance(result, dict):
                pending.insert(0, (name, revision + 1, result))
            else:
                pending[:0] = result
        return done

    def _error(self, stored: StoredEvent, message: str) -> EventSerializationError:
        return EventSerializationError(
            message,
            aggregate_name=stored.aggregate_name,
            aggregate_id=stored.aggregate_id,
            version=stored.version,
            event_name=stored.name,
            position=stored.position,
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n", 1)[0] or type(exc).__name__


def _refuse_non_finite(event: object) -> None:
    """Raise ``ValueError`` naming the first NaN or infinity in an event.

    JSON has no such numbers: msgspec writes them as ``null``, which would read back as ``None``
    or not at all. The walk only runs when the encoded bytes hold a ``null``.
    """
    pending: list[tuple[str, Any]] = [("$", msgspec.to_builtins(event, enc_hook=_python_dump))]
    while pending:
        path, value = pending.pop()
        if type(value) is float and not math.isfinite(value):
            raise ValueError(f"{value} at `{path}`: NaN and infinity cannot be stored")
        if isinstance(value, dict):
            pending.extend((f"{path}.{key}", item) for key, item in value.items())
        elif isinstance(value, list | tuple):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def _may_hold_floats(cls: type[Any]) -> bool:
    """Whether an event of this class could carry a NaN or an infinity (a float anywhere in its
    declared shape, or a value of a type that says nothing, like ``Any``); only those events are
    scanned for them."""
    try:
        pending: list[Any] = [msgspec.inspect.type_info(cls)]
    except Exception:  # a class msgspec cannot describe (pydantic): assume it can
        return True
    seen: set[int] = set()
    while pending:
        info = pending.pop()
        if id(info) in seen:
            continue
        seen.add(id(info))
        if isinstance(info, _OPAQUE):
            return True
        if isinstance(info, _FIELDED):
            pending.extend(field.type for field in info.fields)
        elif isinstance(info, msgspec.inspect.TupleType | msgspec.inspect.UnionType):
            pending.extend(info.item_types if hasattr(info, "item_types") else info.types)
        elif isinstance(info, msgspec.inspect.DictType):
            pending.extend((info.key_type, info.value_type))
        elif isinstance(info, _ITEMS):
            pending.append(info.item_type)
    return False


_OPAQUE = (
    msgspec.inspect.FloatType,
    msgspec.inspect.AnyType,
    msgspec.inspect.CustomType,
    msgspec.inspect.RawType,
)
_FIELDED = (
    msgspec.inspect.DataclassType,
    msgspec.inspect.StructType,
    msgspec.inspect.TypedDictType,
    msgspec.inspect.NamedTupleType,
)
_ITEMS = (
    msgspec.inspect.ListType,
    msgspec.inspect.SetType,
    msgspec.inspect.FrozenSetType,
    msgspec.inspect.VarTupleType,
)


def _python_dump(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic: python mode keeps NaN as a float
    if dump is not None:
        return dump()
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


class StateSerializer:
    """Encodes and decodes snapshots of one aggregate type's state."""

    def __init__(self, state_type: type[Any], transcoder: Transcoder | None = None) -> None:
        self._decode = bytes_decoder(state_type)
        self._transcoder = transcoder

    def encode(self, state: object) -> bytes:
        data = _encoder.encode(state)
        return self._transcoder.encode(data) if self._transcoder is not None else data

    def decode(self, data: bytes) -> Any:
        if self._transcoder is not None:
            data = self._transcoder.decode(data)
        return self._decode(data)
