"""``python -m eventsignal.cli``: the ``eventsignal`` command, without its script."""

from eventsignal.cli import main

main()
