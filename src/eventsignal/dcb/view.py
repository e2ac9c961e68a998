"""The DCB view of a store: where reading and appending by query live."""

from __future__ import annotations

from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.dcb import DcbStore


def view(store: object) -> DcbStore:
    """The DCB view (``read`` by query, ``append`` with a condition) over ``store``'s log.

    Every store of eventsignal has one, as its ``dcb`` attribute; this names the store in the
    error when one does not.
    """
    found = getattr(store, "dcb", None)
    if not isinstance(found, DcbStore):
        raise ConfigurationError(
            f"{type(store).__name__} has no DCB view (a 'dcb' attribute with read and append)"
        )
    return found
