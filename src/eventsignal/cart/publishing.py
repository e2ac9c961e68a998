"""The cart's payments, published: each ``CartPaid`` leaves as a CloudEvent when a sink is set.

Off by default, so serving the cart needs no broker. With ``--publish-to URL`` (or
``CART_PUBLISH_TO``) the app runs the publisher ``cart-paid-events`` beside its revenue
projection: type ``cart.CartPaid``, source ``/cart``, subject the cart id, data
``{"total": cents}``. It is a durable subscription, so ``eventsignal subscriptions`` shows its
lag and a broker outage only delays the events.
"""

from __future__ import annotations

import os

from eventsignal.cart.domain import cart_config
from eventsignal.publishing import publisher
from eventsignal.publishing.urls import sink_from_url
from eventsignal.subscriptions import Subscription

PUBLISH_ENV = "CART_PUBLISH_TO"
SECRET_ENV = "EVENTSIGNAL_WEBHOOK_SECRET"
NAME = "cart-paid-events"


def publish_url(explicit: str | None = None) -> str | None:
    """Where payments are published: the explicit URL, else ``CART_PUBLISH_TO``, else nowhere."""
    return explicit or os.environ.get(PUBLISH_ENV) or None


def payments_publisher(url: str) -> Subscription:
    """The publisher of ``CartPaid`` events to the sink ``url`` names."""
    return publisher(
        NAME,
        sink_from_url(url, secret=os.environ.get(SECRET_ENV)),
        configs=[cart_config],
        event_names=["CartPaid"],
        source="/cart",
    )
