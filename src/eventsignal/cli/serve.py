"""The commands serving web apps: ``cart`` (the shopping cart), ``ui`` (the stream browser)."""

from __future__ import annotations

import click

from eventsignal.cli.running import check_database_file, describe


@click.command(short_help="Serve the shopping cart web app.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on (0: any free).")
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="STORE",
    help="Where carts are stored  [default: $DATABASE_URL, else data/cart.db]",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a client may take to send each request (headers and body).",
)
@click.option(
    "--currency",
    envvar="CART_CURRENCY",
    default="EUR",
    show_default=True,
    help="Currency shown beside prices (prices are kept in its cents).  [env: CART_CURRENCY]",
)
def cart(
    host: str, port: int, database_url: str | None, request_timeout: float, currency: str
) -> None:
    """Serve the shopping cart web app and print the address to open."""
    try:
        from eventsignal.cart.server import serve
    except ImportError as exc:
        raise click.ClickException(
            f"the cart needs 'pip install eventsignal[web]' ({exc})"
        ) from exc
    try:
        serve(host, port, database_url, request_timeout=request_timeout, currency=currency)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise click.ClickException(describe(exc, database_url or "")) from None


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
def ui(store: str, app_spec: str | None, admin_secret: str | None, host: str, port: int) -> None:
    """Serve a web browser over STORE: aggregate types, streams, the live log, subscriptions
    with their parked events, and read models. Prints the address to open."""
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
        serve(store, host, port, configs=configs, admin_secret=admin_secret)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise click.ClickException(describe(exc, store)) from None
