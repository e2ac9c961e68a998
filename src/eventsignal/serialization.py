"""Turning user event objects into bytes and back.

JSON through msgspec by default: dataclasses, msgspec Structs, attrs classes and pydantic models
all encode without registration. A :class:`Transcoder` wraps the bytes for users who need
encryption or compression at rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from eventsignal.domain.errors import EventSerializationError, UnknownEventType
from eventsignal.stores.base import StoredEvent


class Transcoder(Protocol):
    """A reversible transformation of encoded event bytes (encryption, compression)."""

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic v2 models
    if dump is not None:
        return dump(mode="json")
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


def _is_pydantic(cls: type[Any]) -> bool:
    return callable(getattr(cls, "model_validate", None))


class EventSerializer:
    """Encodes and decodes the events of one aggregate type, by their registered names."""

    def __init__(
        self,
        aggregate_name: str,
        event_types: Mapping[str, type[Any]],
        transcoder: Transcoder | None = None,
    ) -> None:
        self.aggregate_name = aggregate_name
        self._names = {cls: name for name, cls in event_types.items()}
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._decoders: dict[str, Callable[[bytes], Any]] = {
            name: self._decoder_for(cls) for name, cls in event_types.items()
        }
        self._transcoder = transcoder

    @staticmethod
    def _decoder_for(cls: type[Any]) -> Callable[[bytes], Any]:
        if _is_pydantic(cls):
            validate = cls.model_validate_json
            return lambda data: validate(data)
        return msgspec.json.Decoder(cls).decode

    def name_of(self, event: object) -> str | None:
        """The registered name of an event instance, or ``None`` if its class is not registered."""
        return self._names.get(type(event))

    def encode(self, event: object, *, aggregate_id: str, version: int) -> tuple[str, bytes]:
        """Return the registered name and the encoded bytes of a user event."""
        name = self._names.get(type(event))
        if name is None:
            raise UnknownEventType(
                f"{type(event).__name__} is not one of the events declared in the aggregate "
                f"config ({', '.join(self._decoders) or 'none'})",
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                event_name=type(event).__name__,
            )
        try:
            data = self._encoder.encode(event)
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise EventSerializationError(
                f"cannot be encoded: {exc}",
                aggregate_name=self.aggregate_name,
                aggregate_id=aggregate_id,
                version=version,
                event_name=name,
            ) from exc
        if self._transcoder is not None:
            data = self._transcoder.encode(data)
        return name, data

    def decode(self, stored: StoredEvent) -> Any:
        """Return the user event held in a stored event."""
        decode = self._decoders.get(stored.name)
        if decode is None:
            raise UnknownEventType(
                "no event class is registered under this name",
                aggregate_name=stored.aggregate_name,
                aggregate_id=stored.aggregate_id,
                version=stored.version,
                event_name=stored.name,
            )
        data = stored.data
        try:
            if self._transcoder is not None:
                data = self._transcoder.decode(data)
            return decode(data)
        except Exception as exc:
            raise EventSerializationError(
                f"stored data cannot be decoded: {exc}",
                aggregate_name=stored.aggregate_name,
                aggregate_id=stored.aggregate_id,
                version=stored.version,
                event_name=stored.name,
            ) from exc
