"""Comparing an exported schema with the configs as they are now: what changed, what breaks.

Stored events are never rewritten, so an event class must go on reading every row written by
its earlier shapes, and consumers of published events expect the fields they know. A change is
breaking when it removes a field, changes a field's type (widening it to a union that still
holds the old type is fine), makes a field required that old rows may lack, or removes an event.
Such a change is fine when the class's ``__revision__`` went up and an upcaster reads each
earlier revision (see :mod:`eventsignal.domain.evolution`); a removed event is fine when an
upcaster reads its last revision (a rename or a split).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError
from eventsignal.domain.evolution import index_upcasters
from eventsignal.schemas.export import FORMAT, export_schema

_IRRELEVANT = frozenset({"title", "description", "default", "examples", "$comment"})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the old and the new schema of an event."""

    aggregate: str
    event: str
    kind: str
    """``removed field``, ``changed type``, ``newly required field``, ``removed event``,
    ``revision``; or, never breaking, ``added field``, ``added event``, ``widened type``,
    ``no longer required``."""
    path: str
    """The field, dotted for nested ones (``product.price``); empty for the whole event."""
    detail: str
    breaking: bool
    handled_by: str = ""
    """Why a breaking change is fine after all: the upcasters that read the old shape."""

    @property
    def fails(self) -> bool:
        """Whether the change breaks readers, with no upcaster to read the old shape."""
        return self.breaking and not self.handled_by

    def __str__(self) -> str:
        where = f"{self.aggregate} {self.event}" + (f".{self.path}" if self.path else "")
        verdict = "BREAKING" if self.fails else ("handled" if self.breaking else "compatible")
        text = f"{verdict}: {where}: {self.kind}"
        if self.detail:
            text += f" ({self.detail})"
        if self.handled_by:
            text += f"; {self.handled_by}"
        return text


def check_schema(
    old: Mapping[str, Any], configs: Sequence[AggregateConfig[Any, Any]]
) -> list[Change]:
    """Every change to the events of ``configs`` since ``old`` (a document of
    :func:`~eventsignal.schemas.export_schema`); those whose :attr:`Change.fails` is true break
    readers. Aggregate types absent from ``old`` are new, and not compared."""
    if old.get("x-eventsignal-schema") != FORMAT:
        raise ConfigurationError(
            "not a schema exported by eventsignal (no 'x-eventsignal-schema': "
            f"{FORMAT}); export one with 'eventsignal schema export'"
        )
    new = export_schema(configs)
    old_defs: Mapping[str, Any] = old.get("$defs", {})
    new_defs: Mapping[str, Any] = new["$defs"]
    changes: list[Change] = []
    for config in configs:
        before = old["aggregates"].get(config.name)
        if before is None:
            continue
        after = new["aggregates"][config.name]["events"]
        upcasters = index_upcasters(config.upcasters)
        for name, was in before["events"].items():
            now = after.get(name)
            if now is None:
                changes.append(_removed(config.name, name, was["revision"], upcasters))
                continue
            fields = _Comparison(old_defs, new_defs).compare(was["schema"], now["schema"], "")
            changes.extend(
                _judged(config.name, name, was["revision"], now["revision"], fields, upcasters)
            )
        for name in after.keys() - before["events"].keys():
            changes.append(Change(config.name, name, "added event", "", "", breaking=False))
    return changes


def _removed(aggregate: str, event: str, revision: int, upcasters: Mapping[Any, Any]) -> Change:
    handled = ""
    if (event, revision) in upcasters:
        handled = f"an upcaster reads its revision {revision}"
    return Change(aggregate, event, "removed event", "", "", breaking=True, handled_by=handled)


def _judged(
    aggregate: str,
    event: str,
    old_revision: int,
    new_revision: int,
    fields: list[tuple[str, str, str, bool]],
    upcasters: Mapping[Any, Any],
) -> list[Change]:
    changes: list[Change] = []
    handled = ""
    if new_revision < old_revision:
        changes.append(
            Change(
                aggregate,
                event,
                "revision",
                "",
                f"went back from {old_revision} to {new_revision}",
                breaking=True,
            )
        )
    elif new_revision > old_revision:
        missing = [r for r in range(old_revision, new_revision) if (event, r) not in upcasters]
        if missing:
            changes.append(
                Change(
                    aggregate,
                    event,
                    "revision",
                    "",
                    f"bumped from {old_revision} to {new_revision}, but no upcaster reads "
                    f"revision {', '.join(map(str, missing))}",
                    breaking=True,
                )
            )
        else:
            handled = f"revision {old_revision} -> {new_revision}, read by upcasters"
    for kind, path, detail, breaking in fields:
        changes.append(
            Change(
                aggregate,
                event,
                kind,
                path,
                detail,
                breaking=breaking,
                handled_by=handled if breaking else "",
            )
        )
    return changes


class _Comparison:
    """Walks an old and a new schema side by side, following each document's references."""

    def __init__(self, old_defs: Mapping[str, Any], new_defs: Mapping[str, Any]) -> None:
        self.defs = (old_defs, new_defs)
        self.visiting: set[tuple[str, str]] = set()

    def compare(self, old: Any, new: Any, path: str) -> list[tuple[str, str, str, bool]]:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if not all(refs):
            return self._compare(old, new, path)
        if refs in self.visiting:  # a recursive type, compared further up already
            return []
        self.visiting.add(refs)
        try:
            return self._compare(old, new, path)
        finally:
            self.visiting.discard(refs)

    def _compare(self, old: Any, new: Any, path: str) -> list[tuple[str, str, str, bool]]:
        old, new = self._resolve(old, 0), self._resolve(new, 1)
        if _is_object(old) and _is_object(new):
            return self._fields(old, new, path)
        if old.get("type") == new.get("type") == "array" and "items" in old and "items" in new:
            return self.compare(old["items"], new["items"], f"{path}[]")
        before, after = self._canonical(old, 0, set()), self._canonical(new, 1, set())
        if before == after:
            return []
        if before in _alternatives(after):
            return [("widened type", path, f"{_text(before)} -> {_text(after)}", False)]
        return [("changed type", path, f"{_text(before)} -> {_text(after)}", True)]

    def _fields(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[tuple[str, str, str, bool]]:
        found: list[tuple[str, str, str, bool]] = []
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for field, schema in old_props.items():
            where = f"{path}.{field}" if path else field
            if field not in new_props:
                found.append(("removed field", where, "", True))
            else:
                found.extend(self.compare(schema, new_props[field], where))
        for field in new_props:
            where = f"{path}.{field}" if path else field
            if field in new_required and field not in old_required:
                detail = "old events lack it" if field not in old_props else "had a default"
                found.append(("newly required field", where, detail, True))
            elif field not in old_props:
                found.append(("added field", where, "optional", False))
        for field in old_required - new_required:
            if field in new_props:
                where = f"{path}.{field}" if path else field
                found.append(("no longer required", where, "", False))
        return found

    def _resolve(self, schema: Any, side: int) -> Any:
        for _ in range(100):
            ref = schema.get("$ref") if isinstance(schema, dict) else None
            if ref is None:
                return schema
            schema = self.defs[side].get(ref.rsplit("/", 1)[-1], {})
        return schema

    def _canonical(self, schema: Any, side: int, visiting: set[str]) -> Any:
        """The schema with references replaced by what they name and wording left out, as
        comparable text; recursion stops at a reference already being expanded."""
        if isinstance(schema, list):
            return [self._canonical(s, side, visiting) for s in schema]
        if not isinstance(schema, dict):
            return schema
        ref = schema.get("$ref")
        if ref is not None:
            if ref in visiting:
                return {"$ref": ref.rsplit("/", 1)[-1]}
            return self._canonical(self._resolve(schema, side), side, visiting | {ref})
        out = {
            k: self._canonical(v, side, visiting) for k, v in schema.items() if k not in _IRRELEVANT
        }
        if "anyOf" in out:
            out["anyOf"] = sorted(out["anyOf"], key=lambda s: msgspec.json.encode(s))
        return out


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object" and "properties" in schema


def _alternatives(schema: Any) -> list[Any]:
    return list(schema.get("anyOf", ())) if isinstance(schema, dict) else []


def _text(schema: Any) -> str:
    """A short name for a canonical schema: ``integer``, ``array of string``, ``a | b``."""
    if not isinstance(schema, dict):
        return str(schema)
    if "anyOf" in schema:
        return " | ".join(_text(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return str(schema["$ref"])
    kind = schema.get("type")
    if kind == "array" and "items" in schema:
        return f"array of {_text(schema['items'])}"
    if kind == "object" and "properties" in schema:
        return "object {" + ", ".join(schema["properties"]) + "}"
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    if isinstance(kind, str):
        extra = schema.get("format")
        return f"{kind} ({extra})" if extra else kind
    return msgspec.json.encode(schema).decode()
