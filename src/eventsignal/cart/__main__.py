"""``python -m eventsignal.cart [--host H] [--port P] [--database-url URL]``."""

from __future__ import annotations

import argparse
import sys

from eventsignal.cart.server import serve


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
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.database_url)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # one line, not a traceback: the message names the cause
        sys.exit(f"error: {' '.join(str(exc).split()) or type(exc).__name__}")


if __name__ == "__main__":
    main()
