"""The API reference: every public name has a docstring and a place in docs/reference.

The site itself is built, with warnings as errors, by ``mkdocs build --strict`` in CI.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"

# The modules whose names are the public API: their ``__all__``, or, without one, every name
# they define that does not start with an underscore.
PUBLIC = [
    "eventsignal",
    "eventsignal.sync",
    "eventsignal.domain",
    "eventsignal.domain.evolution",
    "eventsignal.domain.snapshots",
    "eventsignal.stores",
    "eventsignal.stores.urls",
    "eventsignal.stores.tenancy",
    "eventsignal.subscriptions",
    "eventsignal.testing",
    "eventsignal.scenarios",
    "eventsignal.pytest_plugin",
    "eventsignal.schemas",
    "eventsignal.telemetry",
    "eventsignal.otel",
    "eventsignal.instrumentation",
    "eventsignal.codecs",
    "eventsignal.dcb",
    "eventsignal.publishing",
    "eventsignal.publishing.inbox",
    "eventsignal.privacy",
]
# Classes whose methods state a contract that implementations share without repeating it.
CONTRACTS = [
    "eventsignal.stores.base.EventStore",
    "eventsignal.stores.base.SnapshotStore",
    "eventsignal.stores.base.StoreLifecycle",
    "eventsignal.stores.base.PagedReads",
    "eventsignal.stores.base.FoldReads",
    "eventsignal.stores.idempotency.IdempotentStore",
    "eventsignal.stores.sql.contract.SharedTransactions",
    "eventsignal.stores.subject_keys.SubjectKeyStore",
    "eventsignal.stores.tenancy.TenantAware",
]


def _names(module: ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and (inspect.isclass(value) or inspect.isfunction(value))
    ]


def _public_objects() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in _names(module):
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                found.setdefault(f"{value.__module__}.{value.__qualname__}", value)
    return found


def _contract_docs() -> dict[str, str]:
    docs: dict[str, str] = {}
    for path in CONTRACTS:
        module_name, _, class_name = path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        for name, value in vars(cls).items():
            doc = getattr(value.fget if isinstance(value, property) else value, "__doc__", None)
            if doc and doc.strip():
                docs[name] = doc
    return docs


def _undocumented_members(cls: type, contracts: dict[str, str]) -> list[str]:
    missing = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name.startswith("test_") or name in contracts:
            continue
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if isinstance(value, property):
            value = value.fget
        elif not inspect.isfunction(value):
            continue
        inherited = any(
            getattr(getattr(base, name, None), "__doc__", None) for base in cls.__mro__[1:]
        )
        if not (value.__doc__ and value.__doc__.strip()) and not inherited:
            missing.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    contracts = _contract_docs()
    missing = []
    for path, value in _public_objects().items():
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        if not (own and own.strip()):
            missing.append(path)
        if inspect.isclass(value):
            missing.extend(_undocumented_members(value, contracts))
    assert missing == []


def _directives() -> dict[str, bool]:
    """Each ``::: target`` of the reference pages, and whether it renders the members."""
    found: dict[str, bool] = {}
    for page in REFERENCE.glob("*.md"):
        for match in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", page.read_text(), re.M):
            found[match.group(1)] = "members: false" not in match.group(2)
    return found


def test_every_public_name_is_in_the_reference() -> None:
    directives = _directives()
    missing = [
        path
        for path, value in _public_objects().items()
        if path not in directives and not directives.get(value.__module__, False)
    ]
    assert missing == []


@pytest.mark.parametrize("target", sorted(_directives()))
def test_every_reference_target_exists(target: str) -> None:
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return
    raise AssertionError(f"no module in {target}")
