"""Running a command: the event loop, one-line errors, and opening a store for reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from eventsignal import AggregateNotFound
from eventsignal.stores.base import EventStore
from eventsignal.stores.credentials import describe as describe_error
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


@asynccontextmanager
async def opened(url: str, *, writable: bool = False) -> AsyncIterator[EventStore]:
    """An open store. For reading (the default) it never creates a database nor migrates its
    event tables; a ``writable`` one is created or upgraded as needed."""
    if not writable:
        check_database_file(url)
    store = open_store(url, migrate=writable)
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
