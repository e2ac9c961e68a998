"""Commands on a store's events: ``migrate``, ``aggregates`` and ``history``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import click
import msgspec

from eventsignal import AggregateNotFound
from eventsignal.cli.output import data_text, json_record, table, time_text
from eventsignal.cli.running import opened, run
from eventsignal.stores.base import StoredEvent
from eventsignal.stores.lifecycle import LifecycleStore
from eventsignal.stores.urls import open_store, redact


@click.command(short_help="Create or upgrade the schema of a store.")
@click.argument("store")
def migrate(store: str) -> None:
    """Create or upgrade the schema of STORE.

    Safe to run again, and while applications use the store.
    """

    async def job() -> str:
        target = open_store(store, migrate=False)
        migrate_schema: Callable[[], Coroutine[Any, Any, None]] | None
        migrate_schema = getattr(target, "migrate", None)
        if migrate_schema is None:
            return f"{redact(store)} needs no migration: {type(target).__name__} has no schema"
        await migrate_schema()
        return f"{redact(store)} is migrated: its schema is up to date"

    click.echo(run(job(), store))


@click.command(short_help="List aggregates with their versions.")
@click.argument("store")
@click.option("--type", "aggregate_type", metavar="NAME", help="Only aggregates of this type.")
def aggregates(store: str, aggregate_type: str | None) -> None:
    """List the aggregates in STORE, with their versions (events each)."""

    async def job() -> list[list[object]]:
        async with opened(store) as target:
            found = await target.aggregates(aggregate_type)
        return [
            [a.aggregate_name, a.aggregate_id, a.version, time_text(a.created_at)]
            for a in sorted(found, key=lambda a: (a.aggregate_name, a.created_at, a.aggregate_id))
        ]

    rows = run(job(), store)
    if not rows:
        what = f"of type {aggregate_type!r} " if aggregate_type else ""
        click.echo(f"no aggregates {what}in {redact(store)}")
        return
    click.echo(table(["TYPE", "ID", "VERSION", "CREATED (UTC)"], rows))


@click.command(short_help="Show the events of one aggregate.")
@click.argument("store")
@click.argument("aggregate_type", metavar="TYPE")
@click.argument("aggregate_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
def history(store: str, aggregate_type: str, aggregate_id: str, as_json: bool) -> None:
    """Show the events of aggregate ID of type TYPE in STORE, oldest first.

    Event data is shown as the JSON it is stored as; data a transcoder encrypted or compressed
    is shown as base64.
    """

    async def job() -> Sequence[StoredEvent]:
        async with opened(store) as target:
            events = await target.read_aggregate(aggregate_type, aggregate_id)
            if not events and not await target.exists(aggregate_type, aggregate_id):
                raise AggregateNotFound(aggregate_type, aggregate_id)
            if not events and isinstance(target, LifecycleStore):
                status = await target.stream_status(aggregate_type, aggregate_id)
                if status.state != "live":
                    raise click.ClickException(
                        f"{aggregate_type} {aggregate_id!r} is {status.state}"
                        + (
                            f" ({status.archived} events in {status.location})"
                            if status.archived
                            else ""
                        )
                    )
            return events

    events = run(job(), store)
    if as_json:
        encode = msgspec.json.encode
        for event in events:
            click.echo(encode(json_record(event)).decode())
        return
    if not events:
        click.echo(f"{aggregate_type} {aggregate_id!r} has no events yet")
        return
    rows = [
        [e.version, e.position, time_text(e.timestamp), e.name, data_text(e.data)] for e in events
    ]
    click.echo(table(["VERSION", "POSITION", "TIME (UTC)", "EVENT", "DATA"], rows))
