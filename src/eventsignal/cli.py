"""The ``eventsignal`` command: look into a store, migrate it, rebuild projections, serve the cart.

Every command takes the store as a URL or a path (see :mod:`eventsignal.stores.urls`). Failures
are one line on stderr and exit status 1; a traceback means a bug in eventsignal.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from eventsignal import AggregateNotFound, __version__
from eventsignal.stores.base import EventStore, StoredEvent
from eventsignal.stores.urls import open_store, redact, sqlite_path

T = TypeVar("T")
BUILT_IN_PROJECTIONS = ("eventsignal.cart.revenue",)
OPEN_TIMEOUT = 10.0  # seconds; a store's own connect timeout normally answers sooner


def run(job: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; any failure becomes one line on stderr and exit status 1."""
    try:
        return asyncio.run(job)
    except (click.ClickException, click.exceptions.Exit, KeyboardInterrupt):
        raise
    except AggregateNotFound as exc:
        raise click.ClickException(f"{exc.aggregate_name} {exc.aggregate_id!r} not found") from None
    except Exception as exc:
        raise click.ClickException(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__module__.startswith("eventsignal") or isinstance(exc, ValueError):
        return text
    return f"{type(exc).__name__}: {text}"


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[EventStore]:
    """An open store for reading. Never creates a database or changes its schema."""
    _check_database_file(url)
    store = open_store(url, migrate=False)
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


def _check_database_file(url: str) -> None:
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise click.ClickException(f"no SQLite database at {path}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as aligned columns; numbers right-aligned, the last column left free."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        parts[-1] = values[-1] if not numeric[-1] else parts[-1]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventsignal")
@click.option("-v", "--verbose", is_flag=True, help="Log what the store and its drivers do.")
def main(verbose: bool) -> None:
    """Event sourcing for Python: inspect and maintain eventsignal stores.

    STORE is a SQLite path (data/cart.db, sqlite:///data/cart.db), a PostgreSQL URL
    (postgresql://user@host/db), nats://host:4222 or memory:.
    """
    # Drivers log each failed connection attempt; the command reports the outcome once.
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    else:
        logging.getLogger().addHandler(logging.NullHandler())


@main.command(short_help="Create or upgrade the schema of a store.")
@click.argument("store")
def migrate(store: str) -> None:
    """Create or upgrade the schema of STORE.

    Safe to run again, and while applications use the store.
    """

    async def job() -> str:
        target = open_store(store, migrate=False)
        migrate_schema: Callable[[], Coroutine[Any, Any, None]] | None
        migrate_schema = getattr(target, "migrate", None)
        if migrate_schema is None:
            return f"{redact(store)} needs no migration: {type(target).__name__} has no schema"
        await migrate_schema()
        return f"{redact(store)} is migrated: its schema is up to date"

    click.echo(run(job()))


@main.command(short_help="List aggregates with their versions.")
@click.argument("store")
@click.option("--type", "aggregate_type", metavar="NAME", help="Only aggregates of this type.")
def aggregates(store: str, aggregate_type: str | None) -> None:
    """List the aggregates in STORE, with their versions (events each)."""

    async def job() -> list[list[object]]:
        async with opened(store) as target:
            found = await target.aggregates(aggregate_type)
        return [
            [a.aggregate_name, a.aggregate_id, a.version, _time(a.created_at)]
            for a in sorted(found, key=lambda a: (a.aggregate_name, a.created_at, a.aggregate_id))
        ]

    rows = run(job())
    if not rows:
        what = f"of type {aggregate_type!r} " if aggregate_type else ""
        click.echo(f"no aggregates {what}in {redact(store)}")
        return
    click.echo(table(["TYPE", "ID", "VERSION", "CREATED (UTC)"], rows))


@main.command(short_help="Show the events of one aggregate.")
@click.argument("store")
@click.argument("aggregate_type", metavar="TYPE")
@click.argument("aggregate_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
def history(store: str, aggregate_type: str, aggregate_id: str, as_json: bool) -> None:
    """Show the events of aggregate ID of type TYPE in STORE, oldest first.

    Event data is shown as the JSON it is stored as; data a transcoder encrypted or compressed
    is shown as base64.
    """

    async def job() -> Sequence[StoredEvent]:
        async with opened(store) as target:
            events = await target.read_aggregate(aggregate_type, aggregate_id)
            if not events and not await target.exists(aggregate_type, aggregate_id):
                raise AggregateNotFound(aggregate_type, aggregate_id)
            return events

    events = run(job())
    if as_json:
        encode = msgspec.json.encode
        for event in events:
            click.echo(encode(_record(event)).decode())
        return
    if not events:
        click.echo(f"{aggregate_type} {aggregate_id!r} has no events yet")
        return
    rows = [[e.version, e.position, _time(e.timestamp), e.name, _data_text(e.data)] for e in events]
    click.echo(table(["VERSION", "POSITION", "TIME (UTC)", "EVENT", "DATA"], rows))


@main.command(short_help="Show subscriptions: position, lag, parked events.")
@click.argument("store")
@click.option("--parked", is_flag=True, help="List the parked events, with their errors.")
def subscriptions(store: str, parked: bool) -> None:
    """Show the durable subscriptions of STORE: position, lag and parked events.

    POSITION is the point every partition has passed; LAG counts the events stored after it.
    """
    from eventsignal.subscriptions import parked_events, subscription_status

    async def job() -> list[list[object]]:
        async with opened(store) as target:
            if parked:
                return [
                    [
                        p.subscription,
                        p.position,
                        p.aggregate_name,
                        p.aggregate_id,
                        p.version,
                        p.event_name,
                        p.attempts,
                        p.error,
                    ]
                    for p in await parked_events(target)
                ]
            return [
                [s.name, s.position, s.head, s.lag, s.partitions, s.leased, s.parked]
                for s in await subscription_status(target)
            ]

    rows = run(job())
    if not rows:
        click.echo(f"no {'parked events' if parked else 'subscriptions'} in {redact(store)}")
    elif parked:
        headers = ["SUBSCRIPTION", "POSITION", "TYPE", "ID", "VERSION", "EVENT", "ATTEMPTS"]
        click.echo(table([*headers, "ERROR"], rows))
    else:
        headers = ["NAME", "POSITION", "HEAD", "LAG", "PARTITIONS", "LEASED", "PARKED"]
        click.echo(table(headers, rows))


@main.command(short_help="Replay a projection from the first event.")
@click.argument("store")
@click.argument("name")
@click.option(
    "--import",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE first, so the subscriptions it registers are known (repeatable).",
)
def rebuild(store: str, name: str, modules: tuple[str, ...]) -> None:
    """Replay projection NAME in STORE from the first event, with a progress bar.

    The projection's read models are emptied and its checkpoint sent back to zero; running
    applications pick the replay up. NAME must be registered by an imported module
    (eventsignal.subscriptions.register); the cart's cart-revenue always is.
    """
    from eventsignal.subscriptions import Progress, registered
    from eventsignal.subscriptions import rebuild as replay

    for module in (*BUILT_IN_PROJECTIONS, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.ClickException(f"cannot import {module}: {exc}") from None
    try:
        subscription = registered(name)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    _check_database_file(store)

    async def job() -> Progress:
        target = open_store(store, migrate=False)
        async with opened(store) as probe:
            total = await probe.head_position()
        with click.progressbar(length=total, label=f"Rebuilding {name}", show_eta=True) as bar:
            shown = 0

            def advance(progress: Progress) -> None:
                nonlocal shown
                bar.update(progress.done - shown)
                shown = progress.done

            return await replay(target, subscription, progress=advance)

    done = run(job())
    click.echo(
        f"Rebuilt {name}: {done.done} events in {done.elapsed:.1f} s ({done.rate:,.0f} events/s)"
    )


@main.command(short_help="Serve the shopping cart web app.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on (0: any free).")
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="STORE",
    help="Where carts are stored  [default: $DATABASE_URL, else data/cart.db]",
)
def cart(host: str, port: int, database_url: str | None) -> None:
    """Serve the shopping cart web app and print the address to open."""
    try:
        from eventsignal.cart.server import serve
    except ImportError as exc:
        raise click.ClickException(
            f"the cart needs 'pip install eventsignal[web]' ({exc})"
        ) from exc
    try:
        serve(host, port, database_url)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise click.ClickException(_describe(exc)) from None


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _json_or_none(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None


def _data_text(data: bytes) -> str:
    decoded = _json_or_none(data)
    if decoded is None and data != b"null":
        return f"<{len(data)} bytes, base64 {base64.b64encode(data)[:40].decode()}...>"
    return msgspec.json.encode(decoded).decode()


def _record(event: StoredEvent) -> dict[str, Any]:
    record: dict[str, Any] = {
        "aggregate_name": event.aggregate_name,
        "aggregate_id": event.aggregate_id,
        "version": event.version,
        "position": event.position,
        "id": str(event.id),
        "name": event.name,
        "timestamp": event.timestamp.isoformat(),
        "metadata": dict(event.metadata),
    }
    decoded = _json_or_none(event.data)
    if decoded is None and event.data != b"null":
        record["data_base64"] = base64.b64encode(event.data).decode()
    else:
        record["data"] = decoded
    return record
