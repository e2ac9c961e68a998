"""The ``cart`` command: serve the shopping cart web app. ``eventsignal cart`` and ``python -m
eventsignal.cart`` are this one command."""

from __future__ import annotations

import click

from eventsignal.stores.credentials import describe


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
@click.option(
    "--publish-to",
    envvar="CART_PUBLISH_TO",
    metavar="URL",
    help="Publish each payment as a CloudEvent to this broker (nats://, redis://, amqp://, "
    "https://)  [default: $CART_PUBLISH_TO, else nowhere]",
)
def cart(
    host: str,
    port: int,
    database_url: str | None,
    request_timeout: float,
    currency: str,
    publish_to: str | None,
) -> None:
    """Serve the shopping cart web app and print the address to open."""
    try:
        from eventsignal.cart.server import serve
    except ImportError as exc:
        raise click.ClickException(
            f"the cart needs 'pip install eventsignal[web]' ({exc})"
        ) from exc
    try:
        serve(
            host,
            port,
            database_url,
            request_timeout=request_timeout,
            currency=currency,
            publish_to=publish_to,
        )
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise click.ClickException(describe(exc, database_url or "")) from None
