"""``eventsignal schema``: export event schemas, and check that a change breaks no reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from eventsignal.domain.errors import ConfigurationError


@click.group(short_help="Export event schemas; check changes against an earlier export.")
def schema() -> None:
    """JSON Schema and AsyncAPI documents for the events and commands of aggregate configs.

    TARGET is MODULE:ATTR naming an AggregateConfig, a list of them or a Signal, or MODULE for
    every AggregateConfig it defines (looked up from the current directory first).
    """


def _configs(target: str) -> list[Any]:
    from eventsignal.schemas import find_configs

    try:
        return find_configs(target)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def _write(document: Any, path: str | None) -> None:
    text = msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"
    if path is None or path == "-":
        click.echo(text, nl=False)
    else:
        Path(path).write_text(text)


@schema.command(short_help="Write the JSON Schema of every event and command.")
@click.argument("target")
@click.option(
    "-o", "--output", metavar="FILE", help="Write the JSON Schema here (default: stdout)."
)
@click.option(
    "--asyncapi",
    metavar="FILE",
    help="Also write an AsyncAPI 3.0 document of the events, as CloudEvents messages.",
)
def export(target: str, output: str | None, asyncapi: str | None) -> None:
    """Write the JSON Schema of every event and command class of the configs TARGET names.

    Commit the output and check later versions against it with 'eventsignal schema check'.
    """
    from eventsignal.schemas import asyncapi_document, export_schema

    configs = _configs(target)
    _write(export_schema(configs), output)
    if asyncapi is not None:
        _write(asyncapi_document(configs), asyncapi)


@schema.command(short_help="Fail on a breaking change to an event since an earlier export.")
@click.argument("old", metavar="OLD.json", type=click.Path(exists=True, dir_okay=False))
@click.argument("target")
@click.option("--strict", is_flag=True, help="Fail on any change, so OLD.json stays current.")
def check(old: str, target: str, strict: bool) -> None:
    """Compare the events of the configs TARGET names with OLD.json (from 'schema export').

    Exits with status 1 when an event lost a field, changed a field's type or needs a field old
    events lack, or was removed, with no revision bump read by upcasters; each change is
    explained. Adding events and optional fields, and widening a type to a union, is fine.
    """
    from eventsignal.schemas import check_schema

    try:
        document = msgspec.json.decode(Path(old).read_bytes())
        changes = check_schema(document, _configs(target))
    except (msgspec.DecodeError, ConfigurationError, KeyError, TypeError) as exc:
        raise click.ClickException(f"cannot compare with {old}: {exc}") from None
    for change in changes:
        click.echo(str(change))
    failing = [c for c in changes if c.fails or strict]
    if failing:
        what = "change" if strict else "breaking change"
        raise click.ClickException(
            f"{len(failing)} {what}{'s' if len(failing) > 1 else ''} since {old}"
            + ("; export the schema again to accept them" if strict else "")
        )
    click.echo(f"no breaking change since {old}" if changes else f"no change since {old}")
