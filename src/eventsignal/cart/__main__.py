"""``python -m eventsignal.cart``: serve the cart app; ``--help`` lists the options."""

from __future__ import annotations

import argparse
import sys

from eventsignal.cart.server import serve
from eventsignal.web.timeouts import DEFAULT_REQUEST_TIMEOUT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m eventsignal.cart", description="Serve the eventsignal cart web app."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="store URL or SQLite path (default: $DATABASE_URL, else ./data/cart.db)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a client may take to send a request (default: {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.database_url, request_timeout=args.request_timeout)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # one line, not a traceback: the message names the cause
        sys.exit(f"error: {' '.join(str(exc).split()) or type(exc).__name__}")


if __name__ == "__main__":
    main()
