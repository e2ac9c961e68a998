"""Sealing the personal fields of events on the way to the store, and opening them on the way
back.

An event's JSON payload keeps the *redacted* values of its personal fields, so it always
decodes as its own class. The real values go, per subject, into the event's metadata under
``eventsignal.personal.<digest>``: base64 of a 12-byte nonce and the AES-256-GCM encryption of
a JSON object ``{field: value}`` under the subject's data key, bound to the event's row and to
the subject. Reading puts them back while the key exists; once it is destroyed, the redacted
values are what is left.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from eventsignal.domain.personal import (
    METADATA_PREFIX,
    PersonalDataLocked,
    PersonalField,
    personal_fields,
)
from eventsignal.privacy.keychain import FORGOTTEN, UNKNOWN, Keychain, keychain_for, tenant_of
from eventsignal.privacy.settings import Privacy
from eventsignal.serialization import row_context
from eventsignal.stores.base import EventStore, StoredEvent

PREFIX = METADATA_PREFIX
NONCE_BYTES = 12
_REMEMBERED_DIGESTS = 10_000
_decode_json = msgspec.json.decode
_encode_json = msgspec.json.encode


class PersonalData:
    """The personal fields of one aggregate type's events, and the keys that guard them."""

    def __init__(
        self, aggregate_name: str, event_types: Mapping[str, type[Any]], privacy: Privacy
    ) -> None:
        self.aggregate_name = aggregate_name
        self.privacy = privacy
        self.plans: dict[type[Any], tuple[PersonalField, ...]] = {}
        for cls in event_types.values():
            fields = personal_fields(cls)
            if fields:
                self.plans[cls] = fields
        self._chain: Keychain | None = None
        # (tenant, subject id) -> digest, for the busy subjects
        self._digests: dict[tuple[str, object], str] = {}

    def digest(self, subject: object, tenant: str = "") -> str:
        """The subject's digest, remembered: the same few subjects come back command after
        command."""
        found = self._digests.get((tenant, subject))
        if found is None:
            if len(self._digests) >= _REMEMBERED_DIGESTS:
                self._digests.clear()
            found = self._digests[tenant, subject] = self.privacy.digest(subject, tenant)
        return found

    # Writing

    async def prepare(self, store: EventStore, events: Iterable[object], aggregate_id: str) -> None:
        """Make sure every subject the events name has a key loaded here (creating keys for
        new subjects) and that the store knows this aggregate used it."""
        chain = keychain_for(store)
        self._chain = chain
        digest = self.digest
        tenant = tenant_of(store)
        name = self.aggregate_name
        subjects: set[str] = set()
        for event in events:
            for field in self.plans.get(type(event), ()):
                value = getattr(event, field.subject_attribute, None)
                if value is not None:
                    subjects.add(digest(value, tenant))
        if not subjects:
            return
        recorded = chain.recorded
        uses = {
            (d, name, aggregate_id) for d in subjects if (d, name, aggregate_id) not in recorded
        }
        missing = chain.stale(subjects, self.privacy.key_ttl)
        if uses or missing:
            missing.update(use[0] for use in uses)
            await chain.ensure(missing, uses, self.privacy)

    def seal(
        self,
        fields: Sequence[PersonalField],
        data: bytes,
        context: bytes,
        where: str,
        tenant: str = "",
    ) -> tuple[bytes, dict[str, str]]:
        """The payload with redacted personal values, and the metadata holding the real ones.

        A subject forgotten already gets no ciphertext: its values are dropped at once.
        """
        chain = self._chain
        if chain is None:
            raise PersonalDataLocked(f"{where}: keys not prepared before encoding")
        payload = _decode_json(data)
        groups: dict[str, dict[str, Any]] = {}
        digest = self.digest
        for field in fields:
            subject = payload.get(field.subject)
            if subject is None:
                raise ValueError(
                    f"personal field {field.name!r} names subject field {field.subject!r}, "
                    "which is empty"
                )
            groups.setdefault(digest(subject, tenant), {})[field.name] = payload.get(field.name)
            payload[field.name] = field.redacted
        sealed: dict[str, str] = {}
        for subject_digest, values in groups.items():
            cipher = chain.cipher(subject_digest)
            if cipher is FORGOTTEN:
                continue
            if cipher is None or cipher is UNKNOWN:
                raise PersonalDataLocked(f"{where}: no key prepared for a subject")
            nonce = os.urandom(NONCE_BYTES)
            aad = context + b"\0" + subject_digest.encode()
            box = cipher.encrypt(nonce, _encode_json(values), aad)  # type: ignore[union-attr]
            sealed[PREFIX + subject_digest] = base64.b64encode(nonce + box).decode()
        return _encode_json(payload), sealed

    # Reading

    async def unlock(self, store: EventStore, records: Iterable[StoredEvent]) -> None:
        """Load the keys of the subjects named by those of ``records`` that are this aggregate
        type's, so that decoding them (which is synchronous) finds them."""
        chain = keychain_for(store)
        self._chain = chain
        name = self.aggregate_name
        digests: set[str] = set()
        for record in records:
            metadata = record.metadata
            if metadata and record.aggregate_name == name:
                for key in metadata:
                    if key.startswith(PREFIX):
                        digests.add(key[len(PREFIX) :])
        if digests:
            wanted = chain.stale(digests, self.privacy.key_ttl)
            if wanted:
                await chain.load(wanted, self.privacy)

    def open(self, stored: StoredEvent, data: bytes) -> dict[str, Any] | None:
        """The payload with the personal values put back (those still readable), or ``None``
        when the event carries none."""
        boxes = [
            (key[len(PREFIX) :], value)
            for key, value in stored.metadata.items()
            if key.startswith(PREFIX)
        ]
        if not boxes:
            return None
        chain = self._chain
        payload: dict[str, Any] = _decode_json(data)
        context = row_context(
            stored.aggregate_name, stored.aggregate_id, stored.version, stored.name, stored.tenant
        )
        for digest, box in boxes:
            cipher = None if chain is None else chain.cipher(digest)
            if cipher is FORGOTTEN:
                continue
            if cipher is None:
                raise PersonalDataLocked(
                    f"{stored.aggregate_name} {stored.aggregate_id!r} version {stored.version} "
                    f"({stored.name}): the keys of its subjects were not loaded before decoding "
                    "(await serializer.personal.unlock(store, records) first)"
                )
            if cipher is UNKNOWN:
                raise ValueError(
                    f"the store holds no key for subject {digest[:12]}... "
                    "(were the events copied without their subject keys?)"
                )
            try:
                raw = base64.b64decode(box, validate=True)
                plain = cipher.decrypt(  # type: ignore[union-attr]
                    raw[:NONCE_BYTES], raw[NONCE_BYTES:], context + b"\0" + digest.encode()
                )
            except (InvalidTag, binascii.Error, ValueError):
                raise ValueError(
                    f"the personal data of subject {digest[:12]}... fails authentication: "
                    "altered, or moved from another event"
                ) from None
            payload.update(_decode_json(plain))
        return payload


def where(aggregate_name: str, aggregate_id: str, version: int, name: str) -> str:
    return f"{aggregate_name} {aggregate_id!r} version {version} ({name})"
