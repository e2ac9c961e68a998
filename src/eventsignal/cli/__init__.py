"""The ``eventsignal`` command: look into a store, migrate it, rebuild projections, serve the cart.

Every command takes the store as a URL or a path (see :mod:`eventsignal.stores.urls`). Failures
are one line on stderr and exit status 1; a traceback means a bug in eventsignal.
"""

from __future__ import annotations

import logging

import click

from eventsignal import __version__
from eventsignal.cli.copying import copy
from eventsignal.cli.events import aggregates, history, migrate
from eventsignal.cli.integrity import check, event, quarantine
from eventsignal.cli.keys import keys
from eventsignal.cli.lifecycle import archive, delete, restore, truncate
from eventsignal.cli.privacy import forget
from eventsignal.cli.projections import rebuild, subscriptions
from eventsignal.cli.publishing import publish
from eventsignal.cli.running import Scope
from eventsignal.cli.schema import schema
from eventsignal.cli.serve import cart, ui


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventsignal")
@click.option("-v", "--verbose", is_flag=True, help="Log what the store and its drivers do.")
@click.option(
    "--tenant",
    metavar="NAME",
    envvar="EVENTSIGNAL_TENANT",
    help="Work within one tenant's streams (default: the default tenant's).",
)
@click.option(
    "--all-tenants", is_flag=True, help="Read the streams of every tenant (reading commands only)."
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, tenant: str | None, all_tenants: bool) -> None:
    """Event sourcing for Python: inspect, maintain and move eventsignal stores.

    STORE is a SQLite path (data/cart.db, sqlite:///data/cart.db), a PostgreSQL URL
    (postgresql://user@host/db), nats://host:4222 or memory:.
    """
    if tenant is not None and all_tenants:
        raise click.UsageError("--tenant and --all-tenants exclude each other")
    ctx.obj = Scope(tenant=tenant, every=all_tenants)
    # Drivers log each failed connection attempt; the command reports the outcome once.
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    else:
        logging.getLogger().addHandler(logging.NullHandler())


for command in (
    migrate,
    aggregates,
    history,
    event,
    check,
    quarantine,
    subscriptions,
    rebuild,
    publish,
    copy,
    schema,
    forget,
    cart,
    ui,
    archive,
    restore,
    delete,
    truncate,
    keys,
):
    main.add_command(command)

__all__ = ["main"]
