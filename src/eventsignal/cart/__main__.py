"""``python -m eventsignal.cart``: the same command as ``eventsignal cart`` (``--help`` lists its
options)."""

from __future__ import annotations

from eventsignal.cart.command import cart


def main(argv: list[str] | None = None) -> None:
    # The options of the eventsignal command group, -h included, as `eventsignal cart` has them.
    cart.main(args=argv, prog_name="python -m eventsignal.cart", help_option_names=["-h", "--help"])


if __name__ == "__main__":
    main()
