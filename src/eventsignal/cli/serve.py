"""The commands serving web apps: ``cart`` (the shopping cart, defined with the app) and ``ui``
(the stream browser)."""

from __future__ import annotations

import click

from eventsignal.cart.command import cart
from eventsignal.cli.running import Scope, check_database_file, describe
from eventsignal.stores.tenancy import DEFAULT_TENANT


@click.command(short_help="Browse a store's streams, log and subscriptions in a web browser.")
@click.argument("store")
@click.option(
    "--app",
    "app_spec",
    metavar="MODULE:ATTR",
    help="The application's AggregateConfig (or Signal, or a list): shows decoded states, "
    "and importing MODULE registers its subscriptions so parked events can be retried.",
)
@click.option(
    "--admin-secret",
    envvar="EVENTSIGNAL_ADMIN_SECRET",
    metavar="SECRET",
    help="Allow actions (retry, skip) to whoever logs in with SECRET; every action is "
    "recorded in the store. Without it the browser is read-only.  "
    "[default: $EVENTSIGNAL_ADMIN_SECRET]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on (0: any free).")
@click.pass_context
def ui(
    ctx: click.Context,
    store: str,
    app_spec: str | None,
    admin_secret: str | None,
    host: str,
    port: int,
) -> None:
    """Serve a web browser over STORE: aggregate types, streams, the live log, subscriptions
    with their parked events, and read models. Prints the address to open.

    With --tenant it shows that tenant's streams; with --all-tenants every tenant's, read-only.
    """
    try:
        from eventsignal.browser.server import serve
        from eventsignal.browser.states import load_configs
    except ImportError as exc:
        raise click.ClickException(
            f"the browser needs 'pip install eventsignal[web]' ({exc})"
        ) from exc
    check_database_file(store)
    try:
        configs = load_configs(app_spec) if app_spec else []
        scope = ctx.find_object(Scope) or Scope()
        tenant = None if scope.every else (scope.tenant or DEFAULT_TENANT)
        serve(store, host, port, configs=configs, admin_secret=admin_secret, tenant=tenant)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise click.ClickException(describe(exc, store)) from None


__all__ = ["cart", "ui"]
