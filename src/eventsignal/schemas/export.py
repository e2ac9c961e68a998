"""JSON Schema for the event and command classes of aggregate configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.evolution import split_stored_name
from eventsignal.schemas.discovery import command_types

FORMAT = 1  # the layout of the exported document, stored in it as "x-eventsignal-schema"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def export_schema(configs: Sequence[AggregateConfig[Any, Any]]) -> dict[str, Any]:
    """One JSON document describing every event and command class of ``configs``.

    ``aggregates.<name>.events.<event name>`` holds the event's ``revision`` and its ``schema``;
    ``aggregates.<name>.commands.<class name>`` the schema of a command. Classes used by several
    are described once, under ``$defs``.
    """
    classes: list[type[Any]] = []
    aggregates: dict[str, Any] = {}
    for config in configs:
        events: dict[str, Any] = {}
        for stored, cls in config.event_types.items():
            name, revision = split_stored_name(stored)
            events[name] = {"revision": revision, "class": _qualified(cls), "schema": cls}
            classes.append(cls)
        commands: dict[str, Any] = {}
        for cls in command_types(config):
            commands[cls.__name__] = cls
            classes.append(cls)
        aggregates[config.name] = {"events": events, "commands": commands}
    refs, definitions = schema_components(classes, "#/$defs/{name}")
    for aggregate in aggregates.values():
        for event in aggregate["events"].values():
            event["schema"] = refs[event["schema"]]
        aggregate["commands"] = {n: refs[c] for n, c in aggregate["commands"].items()}
    return {
        "$schema": DIALECT,
        "x-eventsignal-schema": FORMAT,
        "aggregates": aggregates,
        "$defs": definitions,
    }


def schema_components(
    classes: Sequence[type[Any]], ref_template: str
) -> tuple[dict[type[Any], dict[str, Any]], dict[str, Any]]:
    """The schema of each class (a reference, mostly) and the definitions they refer to.

    msgspec describes dataclasses, Structs, attrs classes and TypedDicts; a pydantic model is
    described by pydantic itself.
    """
    unique = list(dict.fromkeys(classes))
    plain = [c for c in unique if not hasattr(c, "model_json_schema")]
    try:
        schemas, definitions = msgspec.json.schema_components(plain, ref_template=ref_template)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot describe the event classes as JSON Schema: {exc}"
        ) from exc
    refs = dict(zip(plain, schemas, strict=True))
    for model in (c for c in unique if hasattr(c, "model_json_schema")):
        schema = model.model_json_schema(ref_template=ref_template.replace("{name}", "{model}"))
        definitions.update(schema.pop("$defs", {}))
        definitions[model.__name__] = schema
        refs[model] = {"$ref": ref_template.format(name=model.__name__)}
    return refs, definitions


def _qualified(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
