"""``eventsignal keys status`` and ``eventsignal keys rotate`` on a SQLite file."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventsignal import Signal
from eventsignal.cart import AddToCart, Product, cart_config
from eventsignal.cli import main
from eventsignal.codecs import AesGcm, KeyRing, generate_key
from eventsignal.stores.urls import open_store


def cli(
    *args: str, answer: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=answer, env=env)
    return result.exit_code, result.output


def fill(url: str, keys: KeyRing, carts: int = 3) -> None:
    async def job() -> None:
        store = open_store(url)
        async with Signal(cart_config, store=store, transcoder=AesGcm(keys)) as signal:
            for n in range(carts):
                cart = await signal.create(f"c{n}")
                await cart.handle_command(AddToCart(Product("apple", 1, 100)))

    asyncio.run(job())


def payloads(path: str) -> list[bytes]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT data FROM eventsignal_events ORDER BY position")
        return [row[0] for row in rows]


def products(url: str, keys: KeyRing) -> list[int]:
    async def job() -> list[int]:
        async with Signal(cart_config, store=open_store(url), transcoder=AesGcm(keys)) as signal:
            return [len((await signal.aggregate(f"c{n}")).state.products) for n in range(3)]

    return asyncio.run(job())


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[str, KeyRing, dict[str, str]]:
    """A store written under k1, and a ring (in an environment variable) whose current is k2."""
    url = str(tmp_path / "cart.db")
    keys = KeyRing({"k1": generate_key()}, current="k1")
    fill(url, keys)
    keys.add("k2", generate_key())
    return url, keys, {"CART_KEYS": keys.to_json().decode()}


def secrets(keys: KeyRing) -> list[str]:
    return [base64.b64encode(keys.key(k) or b"").decode() for k in keys.ids()]


def test_status_counts_payloads_per_key_without_keys(
    rotated: tuple[str, KeyRing, dict[str, str]],
) -> None:
    url, _, _ = rotated
    assert cli("keys", "status", url) == (0, f"{url}: 3 payloads\n  k1: 3\n")


def test_a_dry_run_counts_and_changes_nothing(
    rotated: tuple[str, KeyRing, dict[str, str]],
) -> None:
    url, keys, env = rotated
    before = payloads(url)
    code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", "--dry-run", env=env)
    assert (code, out) == (
        0,
        f"would re-encrypt 3 payloads under key k2 in {url} (0 already under it; by key: "
        "k1 3; 0 unreadable; 0 snapshot(s) to drop) (dry run: nothing changed)\n",
    )
    assert payloads(url) == before
    assert not any(secret in out for secret in secrets(keys))


def test_rotation_is_refused_unless_confirmed(
    rotated: tuple[str, KeyRing, dict[str, str]],
) -> None:
    url, _, env = rotated
    before = payloads(url)
    code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", env=env)
    assert code == 1
    assert f"Re-encrypt 3 payloads under key k2 in {url} (by key: k1 3)?" in out
    assert "Aborted" in out
    assert payloads(url) == before
    code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", answer="n\n", env=env)
    assert code == 1
    assert payloads(url) == before


def test_rotation_re_encrypts_so_the_old_key_can_go(
    rotated: tuple[str, KeyRing, dict[str, str]], tmp_path: Path
) -> None:
    url, keys, _ = rotated
    ring_file = tmp_path / "keys.json"
    ring_file.write_bytes(keys.to_json())
    code, out = cli("keys", "rotate", url, "--keys-file", str(ring_file), "--yes")
    assert (code, out) == (
        0,
        "re-encrypted 3 payloads under key k2, 0 already under it, 0 snapshot(s) dropped\n",
    )
    assert not any(secret in out for secret in secrets(keys))
    assert cli("keys", "status", url) == (0, f"{url}: 3 payloads\n  k2: 3\n")
    only_k2 = KeyRing({"k2": keys.key("k2") or b""}, current="k2")
    assert products(url, only_k2) == [1, 1, 1]
    # Again: nothing left to do.
    code, out = cli("keys", "rotate", url, "--keys-file", str(ring_file), "--yes")
    assert out.startswith("re-encrypted 0 payloads under key k2, 3 already under it")


def test_a_ring_missing_an_old_key_fails_naming_positions(
    rotated: tuple[str, KeyRing, dict[str, str]],
) -> None:
    url, keys, _ = rotated
    only_k2 = KeyRing({"k2": keys.key("k2") or b""}, current="k2")
    env = {"CART_KEYS": only_k2.to_json().decode()}
    code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", "--yes", env=env)
    assert code == 1
    assert "3 payload(s) could not be decoded with this ring (positions 1, 2, 3)" in out
    assert "is a key missing?" in out


def test_the_ring_is_never_taken_from_the_command_line_nor_printed(
    rotated: tuple[str, KeyRing, dict[str, str]],
) -> None:
    url, keys, _ = rotated
    code, out = cli("keys", "rotate", url, "--yes")
    assert code == 2
    assert "exactly one of --keys-file or --keys-env" in out
    code, out = cli("keys", "rotate", url, "--keys-env", "NOT_SET_ANYWHERE", "--yes")
    assert (code, out) == (1, "Error: environment variable NOT_SET_ANYWHERE is not set\n")
    broken = {"CART_KEYS": keys.to_json().decode().replace('"current"', '"curent"')}
    code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", "--yes", env=broken)
    assert code == 1
    assert "environment variable CART_KEYS must be JSON like" in out
    assert not any(secret in out for secret in secrets(keys))
    bad_key = {"CART_KEYS": '{"current": "k1", "keys": {"k1": "not base64!"}}'}
    code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", "--yes", env=bad_key)
    assert (code, out) == (
        1,
        "Error: environment variable CART_KEYS: key 'k1' is not valid base64\n",
    )


def test_on_nats_status_counts_and_rotation_is_refused_with_what_to_do(nats_url: str) -> None:
    url = f"{nats_url}?stream=keys_cli_refused"
    keys = KeyRing({"k1": generate_key()}, current="k1")
    fill(url, keys, carts=1)
    assert cli("keys", "status", url) == (0, f"{url}: 1 payload\n  k1: 1\n")
    keys.add("k2", generate_key())
    env = {"CART_KEYS": keys.to_json().decode()}
    for extra in ("--dry-run", "--yes"):
        code, out = cli("keys", "rotate", url, "--keys-env", "CART_KEYS", extra, env=env)
        assert code == 1
        assert "NatsStore does not support re-encryption" in out
        assert "eventsignal copy" in out
