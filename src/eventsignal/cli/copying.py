"""The ``copy`` command: move a whole store to another backend, then check the copy."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

import click

from eventsignal.cli.running import describe, opened, run
from eventsignal.copying import CopyReport, Verification, copy_store, verify_copy
from eventsignal.stores.urls import redact, scrub


@click.command(short_help="Copy a whole store to another store (SQLite to PostgreSQL...).")
@click.argument("source")
@click.argument("target")
@click.option("--batch", default=1000, show_default=True, help="Events read from SOURCE at a time.")
@click.option("--no-verify", is_flag=True, help="Skip comparing both stores afterwards.")
def copy(source: str, target: str, batch: int, no_verify: bool) -> None:
    """Copy everything SOURCE holds into TARGET, then verify the copy.

    Events keep their ids, versions, timestamps, metadata and global order; aggregates keep
    their creation time; snapshots and subscription state (checkpoints, parked and quarantined
    events, read models) follow, with positions translated to TARGET's. Stop the applications
    writing to SOURCE first. TARGET must be empty, or hold an interrupted copy of SOURCE: the
    copy then continues where it stopped. Exits with status 1 if the stores differ.
    """

    async def job() -> tuple[CopyReport, Verification | None]:
        try:
            async with AsyncExitStack() as stack:
                original = await stack.enter_async_context(opened(source))
                destination = await stack.enter_async_context(opened(target, writable=True))
                with click.progressbar(length=1, label="copying events", file=sys.stderr) as bar:

                    def advance(done: int, total: int) -> None:
                        bar.length = max(total, 1)
                        bar.update(done - bar.pos)

                    report = await copy_store(original, destination, progress=advance, batch=batch)
                if no_verify:
                    return report, None
                return report, await verify_copy(original, destination, batch=batch)
        except click.ClickException:
            raise
        except Exception as exc:
            raise click.ClickException(scrub(describe(exc, source), target)) from None

    report, checked = run(job(), source)
    click.echo(_copied(report, redact(source), redact(target)))
    if checked is None:
        return
    if checked.ok:
        click.echo(
            f"verified: {checked.target.aggregates} aggregates and {checked.target.events} "
            f"events alike on both stores (sha256 {checked.target.digest[:16]})"
        )
        return
    for mismatch in checked.mismatches:
        click.echo(
            f"mismatch: {mismatch.subject}: source {mismatch.source}; target {mismatch.target}",
            err=True,
        )
    raise click.ClickException(
        f"the copy differs from the source in {len(checked.mismatches)} places"
    )


def _copied(report: CopyReport, source: str, target: str) -> str:
    rate = report.copied / report.seconds if report.seconds > 0 else 0.0
    resumed = f", continuing after {report.resumed_after}" if report.resumed_after else ""
    lines = [
        f"copied {report.copied} of {report.events} events{resumed} from {source} to {target} "
        f"in {report.seconds:.1f} s ({rate:.0f} events/s); {report.aggregates} aggregates, "
        f"{report.snapshots} snapshots",
    ]
    if report.state == "copied":
        lines.append(
            f"subscription state: {report.subscriptions} subscriptions, {report.parked} parked "
            f"and {report.quarantined} quarantined events, {report.documents} documents"
        )
    else:
        lines.append(f"subscription state: {report.state}")
    return "\n".join(lines)
