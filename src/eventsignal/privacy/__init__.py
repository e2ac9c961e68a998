"""Personal data in events, and forgetting it (crypto-shredding).

Declare personal fields on the event classes::

    @dataclass
    class CustomerRegistered:
        customer_id: str
        email: Annotated[str, Personal(subject="customer_id")]

Their values are stored encrypted under a key of the data subject (one random AES-256 key per
subject, in the same store as the events); ``await signal.forget(subject)`` destroys the key,
and from then on every reader sees the field's redacted value. See the guide, "Forgetting
personal data", for what is and is not reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eventsignal.domain.personal import Personal, PersonalDataLocked, declares_personal
from eventsignal.privacy.settings import DEFAULT, Privacy
from eventsignal.stores.subject_keys import (
    Forgetting,
    ForgottenSubject,
    SubjectKeyStore,
)

if TYPE_CHECKING:
    from eventsignal.privacy.codec import PersonalData
    from eventsignal.privacy.forgetting import forget, forgotten_subjects, subject_aggregates

__all__ = [
    "Forgetting",
    "ForgottenSubject",
    "Personal",
    "PersonalData",
    "PersonalDataLocked",
    "Privacy",
    "SubjectKeyStore",
    "forget",
    "forgotten_subjects",
    "personal_data",
    "subject_aggregates",
]


def personal_data(
    aggregate_name: str, event_types: Mapping[str, type[Any]], privacy: Privacy | None = None
) -> PersonalData | None:
    """What a serializer needs to seal and open these event classes' personal fields; ``None``
    when none declares any (the common case, which then costs nothing)."""
    if not declares_personal(event_types):
        return None
    from eventsignal.privacy.codec import PersonalData

    return PersonalData(aggregate_name, event_types, privacy or DEFAULT)


def __getattr__(name: str) -> object:
    # The parts that need the ``crypto`` extra are imported when asked for.
    if name == "PersonalData":
        from eventsignal.privacy.codec import PersonalData

        return PersonalData
    if name in ("forget", "forgotten_subjects", "subject_aggregates"):
        from eventsignal.privacy import forgetting

        return getattr(forgetting, name)
    raise AttributeError(name)
