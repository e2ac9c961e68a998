"""``eventsignal keys``: which encryption keys a store's payloads use, and re-encryption.

The key ring never appears on the command line (where other users and shell history would see
it): ``--keys-file`` names a JSON file, ``--keys-env`` an environment variable holding the same
JSON, ``{"current": ID, "keys": {ID: base64 key, ...}}``. No key is ever printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from eventsignal.cli.running import opened, run
from eventsignal.codecs.keys import KeyRing
from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores.urls import redact

RING_FORMAT = '{"current": "key-2", "keys": {"key-1": "<base64>", "key-2": "<base64>"}}'


@click.group(short_help="Encryption keys: status and rotation.")
def keys() -> None:
    """See which keys encrypt a store's payloads, and re-encrypt them under a new key."""


def _ring(keys_file: Path | None, keys_env: str | None) -> KeyRing:
    if (keys_file is None) == (keys_env is None):
        raise click.UsageError("give the key ring with exactly one of --keys-file or --keys-env")
    if keys_env is not None:
        text = os.environ.get(keys_env)
        if not text:
            raise click.ClickException(f"environment variable {keys_env} is not set")
        source = f"environment variable {keys_env}"
    else:
        assert keys_file is not None
        try:
            text = keys_file.read_text()
        except OSError as exc:
            raise click.ClickException(f"cannot read {keys_file}: {exc.strerror}") from None
        source = str(keys_file)
    try:
        return KeyRing.from_json(text, source=source)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def _counts(by_key: dict[str, int]) -> str:
    return ", ".join(f"{key_id} {count}" for key_id, count in sorted(by_key.items())) or "none"


def _payloads(count: int) -> str:
    return f"{count} payload{'' if count == 1 else 's'}"


@keys.command(short_help="Count payloads per key id (no keys needed).")
@click.argument("store")
def status(store: str) -> None:
    """Count the payloads of STORE per encryption key id; each payload names its key, so no
    key is needed. Payloads that name none are counted as "(not encrypted)"."""
    from eventsignal.codecs.rotation import key_census

    async def job() -> dict[str, int]:
        async with opened(store) as target:
            return await key_census(target)

    counts = run(job(), store)
    click.echo(f"{redact(store)}: {_payloads(sum(counts.values()))}")
    for key_id, count in sorted(counts.items()):
        click.echo(f"  {key_id}: {count}")


@keys.command(short_help="Re-encrypt payloads under the current key.")
@click.argument("store")
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help=f"JSON file holding the key ring: {RING_FORMAT}.",
)
@click.option("--keys-env", metavar="VAR", help="Environment variable holding that JSON.")
@click.option(
    "--read-plaintext",
    is_flag=True,
    help="Encrypt payloads written before encryption was turned on, too.",
)
@click.option(
    "--page", type=click.IntRange(min=1), default=500, show_default=True, help="Events per write."
)
@click.option(
    "--pause",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Wait this long after each page, to leave the database to the application.",
)
@click.option("--dry-run", is_flag=True, help="Read and decode everything; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rotate(
    store: str,
    keys_file: Path | None,
    keys_env: str | None,
    read_plaintext: bool,
    page: int,
    pause: float,
    dry_run: bool,
    yes: bool,
) -> None:
    """Re-encrypt every payload of STORE that is not under the key ring's current key.

    Safe while the application runs (it must already use the new key as current: new events
    are then written under it). Payloads are decoded under the key each names, so every old
    key must be in the ring. Snapshots under an old key are dropped (they are rebuilt from
    the events). Running it again resumes: payloads under the current key are skipped. Once
    it reports nothing left, old keys can leave the ring.
    """
    from eventsignal.codecs.aes import AesGcm
    from eventsignal.codecs.rotation import PLAINTEXT, key_census, reencrypt
    from eventsignal.stores.rewriting import rewriter_of

    ring = _ring(keys_file, keys_env)
    codec = AesGcm(ring, read_plaintext=read_plaintext)
    where = redact(store)

    if dry_run:

        async def rehearse() -> str:
            async with opened(store) as target:
                report = await reencrypt(target, codec, page=page, dry_run=True)
            return (
                f"would re-encrypt {_payloads(report.rewritten)} under key {report.key} "
                f"in {where} ({report.current} already under it; by key: "
                f"{_counts(report.by_key)}; {report.unreadable} unreadable; "
                f"{report.snapshots_dropped} snapshot(s) to drop) (dry run: nothing changed)"
            )

        click.echo(run(rehearse(), store))
        return

    async def survey() -> dict[str, int]:
        async with opened(store) as target:
            rewriter_of(target)  # refuse before reading the whole log
            return await key_census(target)

    counts = run(survey(), store)
    stale = sum(n for k, n in counts.items() if k != ring.current and k != PLAINTEXT)
    if read_plaintext:
        stale += counts.get(PLAINTEXT, 0)
    intent = (
        f"re-encrypt {_payloads(stale)} under key {ring.current} in {where} "
        f"(by key: {_counts(counts)})"
    )
    if not yes:
        click.confirm(f"{intent[0].upper()}{intent[1:]}?", abort=True)

    async def job() -> str:
        async with opened(store) as target:
            report = await reencrypt(target, codec, page=page, pause=pause)
        line = (
            f"re-encrypted {_payloads(report.rewritten)} under key {report.key}, "
            f"{report.current} already under it, {report.snapshots_dropped} snapshot(s) dropped"
        )
        if report.changed:
            line += f"; {report.changed} changed meanwhile (run again)"
        if report.unreadable:
            shown = ", ".join(str(p) for p in report.unreadable_positions[:10])
            raise click.ClickException(
                f"{line}; {report.unreadable} payload(s) could not be decoded with this ring "
                f"(positions {shown}{', ...' if report.unreadable > 10 else ''}): is a key missing?"
            )
        return line

    click.echo(run(job(), store))
