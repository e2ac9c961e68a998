"""Commands on a store's events: ``migrate``, ``aggregates`` and ``history``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import click
import msgspec

from eventsignal import AggregateNotFound, StoreUnavailable
from eventsignal.cli.output import data_text, json_record, table, time_text
from eventsignal.cli.running import describe, opened, run
from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.lifecycle import LifecycleStore
from eventsignal.stores.urls import create_database, open_store, redact


@click.command(short_help="Create or upgrade the schema of a store.")
@click.argument("store")
@click.option(
    "--create",
    is_flag=True,
    help="Create the PostgreSQL database STORE names first, if it does not exist.",
)
def migrate(store: str, create: bool) -> None:
    """Create or upgrade the schema of STORE.

    Safe to run again, and while applications use the store. A PostgreSQL database must exist
    (a mistyped name never makes a new one) unless --create is given.
    """

    async def job() -> str:
        created = await create_database(store) if create else False
        target = open_store(store, migrate=False)
        migrate_schema: Callable[[], Coroutine[Any, Any, None]] | None
        migrate_schema = getattr(target, "migrate", None)
        if migrate_schema is None:
            return f"{redact(store)} needs no migration: {type(target).__name__} has no schema"
        try:
            await migrate_schema()
        except StoreUnavailable as exc:
            if "does not exist" in str(exc) and not create:
                raise click.ClickException(
                    f"{describe(exc, store)}; 'eventsignal migrate --create STORE' creates it"
                ) from None
            raise
        done = f"{redact(store)} is migrated: its schema is up to date"
        return f"created the database; {done}" if created else done

    click.echo(run(job(), store))


@click.command(short_help="List aggregates with their versions.")
@click.argument("store")
@click.option("--type", "aggregate_type", metavar="NAME", help="Only aggregates of this type.")
def aggregates(store: str, aggregate_type: str | None) -> None:
    """List the aggregates in STORE, with their versions (events each)."""

    async def job() -> tuple[list[list[object]], list[str]]:
        async with opened(store) as target:
            found = await target.aggregates(aggregate_type)
            known = await _types(target) if aggregate_type and not found else []
        rows: list[list[object]] = [
            [a.tenant, a.aggregate_name, a.aggregate_id, a.version, time_text(a.created_at)]
            for a in sorted(
                found, key=lambda a: (a.tenant, a.aggregate_name, a.created_at, a.aggregate_id)
            )
        ]
        return rows, known

    rows, known = run(job(), store)
    if not rows:
        what = f"of type {aggregate_type!r} " if aggregate_type else ""
        known_types = _known_types(known) if aggregate_type else ""
        click.echo(f"no aggregates {what}in {redact(store)}{known_types}")
        return
    headers = ["TENANT", "TYPE", "ID", "VERSION", "CREATED (UTC)"]
    if not any(row[0] for row in rows):  # a store without tenants shows no tenant column
        headers, rows = headers[1:], [row[1:] for row in rows]
    click.echo(table(headers, rows))


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
                known = await _types(target)
                if aggregate_type not in known:
                    raise click.ClickException(
                        f"{redact(store)} has no aggregate type {aggregate_type!r}"
                        f"{_known_types(known)}"
                    )
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


async def _types(store: EventStore) -> list[str]:
    return sorted({a.aggregate_name for a in await store.aggregates()})


def _known_types(known: Sequence[str]) -> str:
    if not known:
        return " (it holds no aggregates)"
    return f" (its types: {', '.join(known)})"
