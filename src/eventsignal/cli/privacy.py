"""``eventsignal forget``: destroy a data subject's key, so its personal data reads as redacted."""

from __future__ import annotations

import importlib
import os

import click

from eventsignal.cli.running import opened, run
from eventsignal.privacy import Privacy
from eventsignal.privacy.forgetting import forget as forget_subject
from eventsignal.privacy.forgetting import subject_aggregates
from eventsignal.privacy.keychain import subject_key_store_for, tenant_of
from eventsignal.stores.urls import redact
from eventsignal.subscriptions import rebuild as replay
from eventsignal.subscriptions import registered


@click.command(short_help="Forget a data subject (crypto-shredding).")
@click.argument("store")
@click.argument("subject")
@click.option("--dry-run", is_flag=True, help="Show what would be forgotten; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--secret-env",
    metavar="VAR",
    help="Environment variable holding the application's Privacy(secret=...), if it uses one.",
)
@click.option(
    "--rebuild",
    "projections",
    multiple=True,
    metavar="NAME",
    help="Rebuild this projection afterwards, so its read models lose the plaintext "
    "(repeatable; registered by an --import module).",
)
@click.option(
    "--import",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE first, so the projections it registers are known (repeatable).",
)
def forget(
    store: str,
    subject: str,
    dry_run: bool,
    yes: bool,
    secret_env: str | None,
    projections: tuple[str, ...],
    modules: tuple[str, ...],
) -> None:
    """Forget data subject SUBJECT in STORE: destroy its data key for good.

    Every reader then sees the redacted values of its personal fields; snapshots of the
    aggregates that named it are dropped. The store records when, by a digest of SUBJECT,
    never SUBJECT itself. This cannot be undone.
    """
    secret = None
    if secret_env:
        value = os.environ.get(secret_env)
        if not value:
            raise click.ClickException(f"environment variable {secret_env} is not set")
        secret = value.encode()
    privacy = Privacy(secret=secret)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.ClickException(f"cannot import {module}: {exc}") from None
    try:
        targets = [registered(name) for name in projections]
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None

    async def survey() -> tuple[str, bool | None, list[tuple[str, str]]]:
        async with opened(store) as target:
            digest = privacy.digest(subject, tenant_of(target))  # --tenant: its own subject
            keys = subject_key_store_for(target)
            found = await keys.load_subject_keys([digest])
            state = None if digest not in found else found[digest] is not None
            return digest, state, await subject_aggregates(target, subject, privacy=privacy)

    digest, has_key, aggregates = run(survey(), store)
    what = {True: "has a data key", False: "was forgotten already", None: "has no data key"}
    click.echo(f"subject digest {digest} {what[has_key]} in {redact(store)}")
    for name, aggregate_id in aggregates:
        click.echo(f"  named by {name} {aggregate_id!r}")
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    if not yes:
        click.confirm("Destroy this subject's key for good?", abort=True)

    async def job() -> str:
        async with opened(store) as target:
            done = await forget_subject(target, subject, privacy=privacy)
            for projection in targets:
                await replay(target, projection)
        verb = "destroyed its key" if done.destroyed else "recorded it (no key to destroy)"
        return (
            f"forgot subject {done.digest}: {verb}, dropped the snapshots of "
            f"{len(done.aggregates)} aggregate(s) at {done.forgotten_at.isoformat()}"
            + (f"; rebuilt {', '.join(projections)}" if projections else "")
        )

    click.echo(run(job(), store))
