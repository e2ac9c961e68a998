"""Finding the aggregate configs a command line argument names, and their command classes."""

from __future__ import annotations

import importlib
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError


def find_configs(target: str) -> list[AggregateConfig[Any, Any]]:
    """The configs ``MODULE:ATTR`` names: one config, a collection of them, or an object with a
    ``config`` (a Signal); ``MODULE`` alone means every config defined at its top level.

    Modules are looked up from the current directory first, as ``python -m`` would.
    """
    module_name, _, attribute = target.partition(":")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name}: {exc}") from None
    if not attribute:
        found = [v for v in vars(module).values() if isinstance(v, AggregateConfig)]
    else:
        value: Any = module
        for part in attribute.split("."):
            try:
                value = getattr(value, part)
            except AttributeError:
                raise ConfigurationError(f"{module_name} has no attribute {attribute}") from None
        found = list(_configs_in(value))
    if not found:
        raise ConfigurationError(f"{target} names no AggregateConfig")
    unique: dict[int, AggregateConfig[Any, Any]] = {id(c): c for c in found}
    return sorted(unique.values(), key=lambda c: c.name)


def _configs_in(value: object) -> Iterable[AggregateConfig[Any, Any]]:
    if isinstance(value, AggregateConfig):
        yield value
    elif isinstance(getattr(value, "config", None), AggregateConfig):
        yield value.config  # type: ignore[attr-defined]
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _configs_in(item)
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        for item in value:
            yield from _configs_in(item)


def command_types(config: AggregateConfig[Any, Any]) -> list[type[Any]]:
    """The command classes of ``config``, read from the annotation of its command handler's first
    parameter (a class, or a union of classes); none when it is not annotated with classes."""
    handler = config.command_handler
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # an annotation that cannot be resolved names no command classes
        return []
    parameters = [name for name in hints if name != "return"]
    if not parameters:
        return []
    return [t for t in _members(hints[parameters[0]]) if isinstance(t, type)]


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    if annotation is Any or annotation is object or annotation is type(None):
        return []
    return [annotation]
