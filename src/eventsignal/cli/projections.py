"""Commands on durable subscriptions: ``subscriptions`` and ``rebuild``."""

from __future__ import annotations

import importlib

import click

from eventsignal.cli.output import table
from eventsignal.cli.running import check_database_file, opened, run
from eventsignal.stores.urls import open_store, redact
from eventsignal.subscriptions import (
    Progress,
    parked_events,
    registered,
    subscription_status,
)
from eventsignal.subscriptions import rebuild as replay

BUILT_IN_PROJECTIONS = ("eventsignal.cart.revenue", "eventsignal.cart.recent")


@click.command(short_help="Show subscriptions: position, lag, parked events.")
@click.argument("store")
@click.option("--parked", is_flag=True, help="List the parked events, with their errors.")
def subscriptions(store: str, parked: bool) -> None:
    """Show the durable subscriptions of STORE: position, lag and parked events.

    POSITION is the point every partition has passed; LAG counts the events stored after it.
    """

    async def job() -> list[list[object]]:
        async with opened(store) as target:
            if parked:
                return [
                    [
                        p.subscription,
                        p.position,
                        p.aggregate_name,
                        p.aggregate_id,
                        p.version,
                        p.event_name,
                        p.attempts,
                        p.error,
                    ]
                    for p in await parked_events(target)
                ]
            return [
                [s.name, s.position, s.head, s.lag, s.partitions, s.leased, s.parked]
                for s in await subscription_status(target)
            ]

    rows = run(job(), store)
    if not rows:
        click.echo(f"no {'parked events' if parked else 'subscriptions'} in {redact(store)}")
    elif parked:
        headers = ["SUBSCRIPTION", "POSITION", "TYPE", "ID", "VERSION", "EVENT", "ATTEMPTS"]
        click.echo(table([*headers, "ERROR"], rows))
    else:
        headers = ["NAME", "POSITION", "HEAD", "LAG", "PARTITIONS", "LEASED", "PARKED"]
        click.echo(table(headers, rows))


@click.command(short_help="Replay a projection from the first event.")
@click.argument("store")
@click.argument("name")
@click.option(
    "--import",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE first, so the subscriptions it registers are known (repeatable).",
)
def rebuild(store: str, name: str, modules: tuple[str, ...]) -> None:
    """Replay projection NAME in STORE from the first event, with a progress bar.

    The projection's read models are emptied and its checkpoint sent back to zero; running
    applications pick the replay up. NAME must be registered by an imported module
    (eventsignal.subscriptions.register); the cart's cart-revenue always is.
    """
    for module in (*BUILT_IN_PROJECTIONS, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.ClickException(f"cannot import {module}: {exc}") from None
    try:
        subscription = registered(name)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    check_database_file(store)

    async def job() -> Progress:
        target = open_store(store, migrate=False)
        async with opened(store) as probe:
            total = await probe.head_position()
        with click.progressbar(length=total, label=f"Rebuilding {name}", show_eta=True) as bar:
            shown = 0

            def advance(progress: Progress) -> None:
                nonlocal shown
                bar.update(progress.done - shown)
                shown = progress.done

            return await replay(target, subscription, progress=advance)

    done = run(job(), store)
    click.echo(
        f"Rebuilt {name}: {done.done} events in {done.elapsed:.1f} s ({done.rate:,.0f} events/s)"
    )
