"""The application's side: its aggregate configs, their decoded states, and what changed.

``eventsignal ui STORE --app MODULE:ATTR`` imports the application's module (which also
registers its subscriptions, so parked events can be retried) and takes from ATTR the aggregate
configs: an :class:`~eventsignal.AggregateConfig`, a :class:`~eventsignal.Signal`, or a list of
either. Without them the browser shows events as stored; with them, states at any version.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

import msgspec

from eventsignal.application import Signal
from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError


def load_configs(spec: str) -> list[AggregateConfig[Any, Any]]:
    """The aggregate configs ``MODULE:ATTR`` names; a :class:`ConfigurationError` says what is
    wrong with the name."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigurationError(
            f"--app takes MODULE:ATTR (say myapp.carts:cart_config), not {spec!r}"
        )
    if os.getcwd() not in sys.path:  # the user's own modules, as `python -m` would find them
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name}: {exc}") from None
    try:
        found: object = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"{module_name} has no attribute {attribute!r}") from None
    items: Iterable[object] = (
        found if isinstance(found, list | tuple | set | frozenset) else [found]
    )
    configs: list[AggregateConfig[Any, Any]] = []
    for item in items:
        if isinstance(item, Signal):
            item = item.config
        if not isinstance(item, AggregateConfig):
            raise ConfigurationError(
                f"{spec} is a {type(item).__name__}: expected an AggregateConfig, a Signal, "
                "or a list of them"
            )
        configs.append(item)
    return configs


def state_json(state: object) -> str:
    """A state as indented JSON (its repr when JSON cannot carry it)."""
    try:
        encoded = msgspec.json.encode(state)
    except (TypeError, msgspec.EncodeError):
        dump = getattr(state, "model_dump", None)  # pydantic models
        if dump is None:
            return repr(state)
        encoded = msgspec.json.encode(dump(mode="json"))
    return msgspec.json.format(encoded, indent=2).decode()


class DiffLine(msgspec.Struct, frozen=True):
    """One line of a diff: ``kind`` is ``"same"``, ``"added"``, ``"removed"`` or ``"gap"``."""

    kind: str
    text: str


def diff_lines(before: str, after: str, context: int = 3) -> list[DiffLine]:
    """The lines that differ between two texts, with ``context`` lines around each change."""
    lines: list[DiffLine] = []
    old, new = before.splitlines(), after.splitlines()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        if lines:
            lines.append(DiffLine("gap", "…"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines.extend(DiffLine("same", text) for text in old[i1:i2])
                continue
            lines.extend(DiffLine("removed", text) for text in old[i1:i2])
            lines.extend(DiffLine("added", text) for text in new[j1:j2])
    return lines
