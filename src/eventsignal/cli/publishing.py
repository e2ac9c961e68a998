"""The ``publish`` command: a relay from a store to a broker, as a durable subscription."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from typing import Any

import click

from eventsignal.cli.running import opened, run
from eventsignal.domain.config import AggregateConfig
from eventsignal.publishing import close_sink, publisher
from eventsignal.publishing.raw import StoredJSON
from eventsignal.publishing.urls import sink_from_url
from eventsignal.serialization import EventSerializer
from eventsignal.stores.urls import redact
from eventsignal.subscriptions import SubscriptionRunner

SECRET_VARIABLE = "EVENTSIGNAL_WEBHOOK_SECRET"


def _config(spec: str) -> AggregateConfig[Any, Any]:
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"cannot import {spec}: {exc}") from None
    if not isinstance(found, AggregateConfig):
        raise click.ClickException(f"{spec} is a {type(found).__name__}, not an AggregateConfig")
    return found


@click.command(short_help="Publish a store's events to a broker as CloudEvents.")
@click.argument("store")
@click.option(
    "--to", "to", required=True, metavar="URL", help="nats://, redis://, amqp:// or https://..."
)
@click.option("--name", default="publisher", show_default=True, help="The subscription's name.")
@click.option(
    "--type", "types", multiple=True, metavar="AGGREGATE", help="Publish only this type (repeat)."
)
@click.option("--event", "events", multiple=True, metavar="NAME", help="Only this event (repeat).")
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="MODULE:NAME",
    help="Decode this aggregate type with its config, so its upcasters apply, instead of "
    "publishing the stored JSON as is (repeat).",
)
@click.option("--source", metavar="URI", help="The CloudEvent source (default: /<aggregate>).")
@click.option("--mode", type=click.Choice(["structured", "binary"]), help="Default: the sink's.")
@click.option(
    "--start",
    type=click.Choice(["beginning", "end"]),
    default="beginning",
    show_default=True,
    help="Where a relay of a new NAME starts; later runs resume from the checkpoint.",
)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1))
@click.option("--partitions", default=1, show_default=True, type=click.IntRange(1))
@click.option(
    "--lease-ttl",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5),
    help="Seconds before a dead relay's partitions pass to another.",
)
def publish(
    store: str,
    to: str,
    name: str,
    types: tuple[str, ...],
    events: tuple[str, ...],
    configs: tuple[str, ...],
    source: str | None,
    mode: str | None,
    start: str,
    batch_size: int,
    partitions: int,
    lease_ttl: float,
) -> None:
    """Publish the events of STORE to the broker at URL, as CloudEvents, until stopped.

    The relay is a durable subscription (NAME): it resumes where it stopped, several relays of
    the same NAME share its partitions, and `eventsignal subscriptions STORE` shows its lag. An
    event's checkpoint moves once the broker confirmed it; after a crash the unconfirmed ones
    are published again with the same CloudEvent id. Without --type, every aggregate type in the
    store when the relay starts is published. Webhook requests are signed with the secret in
    $EVENTSIGNAL_WEBHOOK_SECRET when it is set.
    """
    decoders: list[EventSerializer | AggregateConfig[Any, Any]] = [_config(c) for c in configs]

    async def job() -> None:
        async with opened(store, writable=True) as target:
            names = set(types) or {a.aggregate_name for a in await target.aggregates()}
            known = {getattr(c, "name", None) for c in decoders}
            readers = decoders + [StoredJSON(n) for n in sorted(names - known)]
            if not readers:
                raise click.ClickException(f"no events to publish in {redact(store)}: pass --type")
            sink = sink_from_url(to, mode=mode, secret=os.environ.get(SECRET_VARIABLE))  # type: ignore[arg-type]
            relay = publisher(
                name,
                sink,
                configs=readers,
                event_names=events or None,
                source=source,
                start=start,
                batch_size=batch_size,
                partitions=partitions,
                lease_ttl=lease_ttl,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(number, stop.set)
            click.echo(
                f"publishing {', '.join(sorted(n for n in (known | names) if n))} from "
                f"{redact(store)} to {redact(to)} as {name!r}",
                err=True,
            )
            try:
                async with SubscriptionRunner(relay, target):
                    await stop.wait()
            finally:
                await close_sink(relay)

    run(job(), store)
