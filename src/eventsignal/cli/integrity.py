"""Commands for events that cannot be read: ``check``, ``event`` and ``quarantine``."""

from __future__ import annotations

import importlib
from typing import Any

import click
import msgspec

from eventsignal.cli.output import json_record, table
from eventsignal.cli.running import opened, run
from eventsignal.domain.config import AggregateConfig
from eventsignal.inspection import UnreadableEvent, unreadable_events
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.urls import redact
from eventsignal.subscriptions import quarantine as set_aside
from eventsignal.subscriptions import quarantined, release_quarantined


def _configs(modules: tuple[str, ...]) -> list[AggregateConfig[Any, Any]]:
    found: list[AggregateConfig[Any, Any]] = []
    for module in modules:
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            raise click.ClickException(f"cannot import {module}: {exc}") from None
        found.extend(v for v in vars(imported).values() if isinstance(v, AggregateConfig))
    return found


@click.command(short_help="Find stored events that cannot be read.")
@click.argument("store")
@click.option(
    "--import",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="Also decode the data of the aggregate types MODULE declares (repeatable).",
)
def check(store: str, modules: tuple[str, ...]) -> None:
    """List the events in STORE that cannot be read, with what is wrong with each.

    Envelopes are always checked; event data only for the aggregate types declared (as
    AggregateConfig objects) in the modules given with --import. Exits with status 1 when some
    event cannot be read.
    """
    configs = _configs(modules)

    async def job() -> list[UnreadableEvent]:
        async with opened(store) as target:
            return [bad async for bad in unreadable_events(target, configs)]

    found = run(job())
    if not found:
        types = ", ".join(c.name for c in configs)
        scope = f"data of {types} included" if types else "envelopes only"
        click.echo(f"every event in {redact(store)} reads back ({scope})")
        return
    rows = [
        [b.position, b.aggregate_name, b.aggregate_id, b.version, b.event_name, b.problem]
        for b in found
    ]
    click.echo(table(["POSITION", "TYPE", "ID", "VERSION", "EVENT", "PROBLEM"], rows))
    raise SystemExit(1)


@click.command(short_help="Show one stored event, as stored.")
@click.argument("store")
@click.argument("position", type=click.IntRange(min=1))
def event(store: str, position: int) -> None:
    """Show the event at POSITION in STORE as one JSON object: envelope, metadata, data (or
    data_base64), and what cannot be read about it, if anything."""

    async def job() -> StoredEvent:
        async with opened(store) as target:
            found = await target.read_all(position - 1, 1)
        if not found or found[0].position != position:
            raise click.ClickException(f"no event at position {position} in {redact(store)}")
        return found[0]

    click.echo(msgspec.json.encode(json_record(run(job()))).decode())


@click.command(short_help="Set events aside so subscriptions pass them by.")
@click.argument("store")
@click.argument("position", type=click.IntRange(min=1), required=False)
@click.option("--reason", help="Why the event at POSITION is set aside (required with POSITION).")
@click.option("--release", is_flag=True, help="Take POSITION out of quarantine instead.")
def quarantine(store: str, position: int | None, reason: str | None, release: bool) -> None:
    """Quarantine the event at POSITION in STORE, or list the quarantined events.

    Every durable subscription passes a quarantined event by (running ones from their next
    lease renewal, stopped ones once restarted). Nothing stored is changed: fix the data with an
    upcaster or a compensating event, then --release it.
    """

    async def job() -> str | list[list[object]]:
        async with opened(store) as target:
            if position is None:
                return [[p, r] for p, r in (await quarantined(target)).items()]
            if release:
                if await release_quarantined(target, position):
                    return f"released the event at position {position}"
                return f"the event at position {position} was not quarantined"
            if not reason:
                raise click.UsageError("say why, with --reason")
            await set_aside(target, position, reason)
            return f"quarantined the event at position {position}"

    result = run(job())
    if isinstance(result, str):
        click.echo(result)
    elif result:
        click.echo(table(["POSITION", "REASON"], result))
    else:
        click.echo(f"no quarantined events in {redact(store)}")


__all__ = ["check", "event", "quarantine"]
