"""Serving the stream browser with uvicorn, as ``eventsignal ui`` does."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from eventsignal.browser.app import create_app
from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.stores.tenancy import DEFAULT_TENANT, tenant_store
from eventsignal.stores.urls import open_store, redact
from eventsignal.web.serving import listen, serve_until_stopped, server_config
from eventsignal.web.timeouts import DEFAULT_REQUEST_TIMEOUT

SHUTDOWN_GRACE = 2  # seconds open live logs get to end when the browser stops


def serve(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    configs: Sequence[AggregateConfig[Any, Any]] = (),
    admin_secret: str | None = None,
    out: TextIO = sys.stdout,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    tenant: str | None = DEFAULT_TENANT,
) -> None:
    """Run the browser on the store ``url`` names until interrupted.

    The store is opened (never migrated: a browser only looks) and the port bound before the
    server starts, so a wrong URL or a busy port fails here, in one line. ``tenant`` is the
    tenant whose streams it shows (``None``: every tenant's, read-only).
    """
    if tenant is None and admin_secret:
        raise ConfigurationError("admin actions need one tenant: the view of every tenant reads")
    root = open_store(url, migrate=False)
    store = root if tenant == DEFAULT_TENANT else tenant_store(root, tenant)
    app = create_app(store, url=url, configs=configs, admin_secret=admin_secret)
    config = server_config(app, request_timeout)
    config.timeout_graceful_shutdown = SHUTDOWN_GRACE
    listener = listen(host, port)

    async def run() -> None:
        await store.open()
        try:
            if isinstance(store, SubscriptionStore):
                await store.setup_subscriptions()
            mode = "admin actions allowed" if admin_secret else "read-only"
            where = {DEFAULT_TENANT: "", None: ", every tenant"}.get(tenant, f", tenant {tenant}")
            banner = f"Stream browser on {redact(url)} ({mode}{where})"
            await serve_until_stopped(config, listener, banner, out)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    finally:
        listener.close()
