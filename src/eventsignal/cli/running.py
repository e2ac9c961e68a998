"""Running a command: the event loop, one-line errors, and opening a store for reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from eventsignal import AggregateNotFound, SignalError
from eventsignal.stores.base import EventStore
from eventsignal.stores.credentials import describe as describe_error
from eventsignal.stores.tenancy import tenant_store
from eventsignal.stores.urls import open_store, redact, sqlite_path

T = TypeVar("T")
OPEN_TIMEOUT = 10.0  # seconds; a store's own connect timeout normally answers sooner


def run(job: Coroutine[Any, Any, T], store: str = "") -> T:
    """Run a command's coroutine; any failure becomes one line on stderr and exit status 1.

    The line never shows the credentials of ``store``, whatever the driver's message quotes.
    """
    try:
        return asyncio.run(job)
    except (click.ClickException, click.exceptions.Exit, KeyboardInterrupt):
        raise
    except AggregateNotFound as exc:
        raise click.ClickException(f"{exc.aggregate_name} {exc.aggregate_id!r} not found") from None
    except Exception as exc:
        raise click.ClickException(describe(exc, store)) from None


def describe(exc: BaseException, store: str = "") -> str:
    """One line for an error, with the credentials of ``store`` masked."""
    return describe_error(exc, store)


class Scope(msgspec.Struct, frozen=True):
    """The tenants a command works in: one (``tenant``), every one (``every``), or the default."""

    tenant: str | None = None
    every: bool = False


def _scoped(store: EventStore) -> EventStore:
    """``store`` as the command line's ``--tenant`` or ``--all-tenants`` asked to see it."""
    context = click.get_current_context(silent=True)
    scope = context.find_object(Scope) if context is not None else None
    if scope is None or (scope.tenant is None and not scope.every):
        return store
    try:
        return tenant_store(store, None if scope.every else scope.tenant)
    except SignalError as exc:
        raise click.ClickException(str(exc)) from None


@asynccontextmanager
async def opened(url: str, *, writable: bool = False) -> AsyncIterator[EventStore]:
    """An open store, seen within the tenant the command line names. For reading (the default)
    it never creates a database nor migrates its event tables; a ``writable`` one is created or
    upgraded as needed."""
    if not writable:
        check_database_file(url)
    store = _scoped(open_store(url, migrate=writable))
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            await store.open()
    except TimeoutError:
        raise click.ClickException(
            f"cannot reach {redact(url)} within {OPEN_TIMEOUT:g} seconds"
        ) from None
    try:
        yield store
    finally:
        await store.close()


def check_database_file(url: str) -> None:
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise click.ClickException(f"no SQLite database at {path}")
