"""The stream browser: ``eventsignal ui STORE`` shows any store's aggregates, streams, log,
subscriptions and read models in a web browser (see :mod:`eventsignal.browser.app`)."""

from eventsignal.browser.app import create_app

__all__ = ["create_app"]
