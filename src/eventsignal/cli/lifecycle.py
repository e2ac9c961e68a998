"""Commands for the life of a stream: ``archive``, ``restore``, ``delete`` and ``truncate``.

Each one says what it is about to do, with counts, and asks first (``--yes`` skips the
question); ``--dry-run`` says it and stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from eventsignal.cli.running import opened, run
from eventsignal.stores.lifecycle import (
    LifecycleResult,
    LifecycleStore,
    StreamStatus,
    lifecycle_of,
)
from eventsignal.stores.urls import redact

Plan = Callable[[StreamStatus], str]
Act = Callable[[LifecycleStore], Any]


def _options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(
        command
    )
    command = click.option(
        "--dry-run", is_flag=True, help="Say what would happen, with counts, and change nothing."
    )(command)
    command = click.argument("aggregate_id", metavar="ID")(command)
    command = click.argument("name")(command)
    return click.argument("store")(command)


def _carry_out(
    store: str,
    operation: str,
    name: str,
    aggregate_id: str,
    plan: Plan,
    act: Act,
    *,
    dry_run: bool,
    yes: bool,
) -> None:
    async def look() -> str:
        async with opened(store) as target:
            streams = lifecycle_of(target, operation)
            return plan(await streams.stream_status(name, aggregate_id))

    intent = run(look(), store)
    where = redact(store)
    if dry_run:
        click.echo(f"would {intent} in {where} (dry run: nothing changed)")
        return
    if not yes:
        click.confirm(f"{intent[0].upper()}{intent[1:]} in {where}?", abort=True)

    async def do() -> LifecycleResult:
        async with opened(store) as target:
            result: LifecycleResult = await act(lifecycle_of(target, operation))
            return result

    result = run(do(), store)
    done = f"{result.operation}: {name} {aggregate_id!r}, {_events(result.events)}"
    if result.position:
        done += f", deletion recorded at position {result.position}"
    click.echo(done)


def _events(count: int) -> str:
    return f"{count} event{'' if count == 1 else 's'}"


def _state(status: StreamStatus) -> str:
    if status.state != "live":
        return f" (it is {status.state})"
    return ""


@click.command(short_help="Move an aggregate's events to cold storage.")
@_options
def archive(store: str, name: str, aggregate_id: str, dry_run: bool, yes: bool) -> None:
    """Archive aggregate ID of type NAME in STORE: its events move to cold storage (a table of
    the same database), leave the log and rebuilds, and the aggregate refuses commands until
    restored. Positions and versions are kept for the restore."""

    def plan(status: StreamStatus) -> str:
        return f"archive {name} {aggregate_id!r}: {_events(status.events)}{_state(status)}"

    _carry_out(
        store,
        "archive",
        name,
        aggregate_id,
        plan,
        lambda s: s.archive(name, aggregate_id),
        dry_run=dry_run,
        yes=yes,
    )


@click.command(short_help="Bring an archived aggregate's events back.")
@_options
def restore(store: str, name: str, aggregate_id: str, dry_run: bool, yes: bool) -> None:
    """Restore archived aggregate ID of type NAME in STORE, at its original positions and
    versions. Subscriptions that have not reached them yet will see them."""

    def plan(status: StreamStatus) -> str:
        return f"restore {name} {aggregate_id!r}: {_events(status.archived)}{_state(status)}"

    _carry_out(
        store,
        "restore",
        name,
        aggregate_id,
        plan,
        lambda s: s.restore(name, aggregate_id),
        dry_run=dry_run,
        yes=yes,
    )


@click.command(short_help="Delete an aggregate's events for good.")
@_options
def delete(store: str, name: str, aggregate_id: str, dry_run: bool, yes: bool) -> None:
    """Delete aggregate ID of type NAME in STORE: its events (archived ones too) and snapshot
    are removed, a deletion record is appended to the log for subscriptions, and the id can
    never be created again. This cannot be undone."""

    def plan(status: StreamStatus) -> str:
        count = status.events + status.archived
        return f"delete {name} {aggregate_id!r} for good: {_events(count)}{_state(status)}"

    _carry_out(
        store,
        "delete",
        name,
        aggregate_id,
        plan,
        lambda s: s.delete(name, aggregate_id),
        dry_run=dry_run,
        yes=yes,
    )


@click.command(short_help="Remove an aggregate's events before a version.")
@_options
@click.option(
    "--before",
    "version",
    type=click.IntRange(min=1),
    required=True,
    metavar="VERSION",
    help="The first version to keep.",
)
def truncate(
    store: str, name: str, aggregate_id: str, version: int, dry_run: bool, yes: bool
) -> None:
    """Remove the events of aggregate ID of type NAME in STORE before version VERSION.

    Refused unless a snapshot at version VERSION-1 or later is stored: rebuilds start from it.
    The command checks that one is stored, not that the application can read it (a Signal's
    truncate_before checks both).
    """

    def plan(status: StreamStatus) -> str:
        count = max(min(version, status.version + 1) - status.first_version, 0)
        return (
            f"truncate {name} {aggregate_id!r} before version {version}: "
            f"{_events(count)} of {status.events}{_state(status)}"
        )

    _carry_out(
        store,
        "truncate_before",
        name,
        aggregate_id,
        plan,
        lambda s: s.truncate_before(name, aggregate_id, version),
        dry_run=dry_run,
        yes=yes,
    )
