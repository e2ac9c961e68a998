"""``eventsignal archive``, ``restore``, ``delete`` and ``truncate`` on a SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from eventsignal import Signal
from eventsignal.cart import AddToCart, CompletePurchase, Product, cart_config
from eventsignal.cli import main
from eventsignal.stores.urls import open_store


def cli(*args: str, answer: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=answer)
    return result.exit_code, result.output


def fill(url: str) -> None:
    """Cart c1 with two events, cart c2 with one."""

    async def job() -> None:
        async with Signal(cart_config, store=open_store(url), telemetry=None) as signal:
            c1 = await signal.create("c1")
            await c1.handle_command(AddToCart(Product("apple", 2, 120)))
            await c1.handle_command(CompletePurchase())
            c2 = await signal.create("c2")
            await c2.handle_command(AddToCart(Product("pear", 1, 80)))

    asyncio.run(job())


def rows(path: str, aggregate_id: str) -> list[tuple[int, int, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT position, version, name FROM eventsignal_events WHERE aggregate_id = ?"
            " ORDER BY position",
            (aggregate_id,),
        ).fetchall()


def test_archive_and_restore(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    before = rows(url, "c1")
    code, out = cli("archive", url, "cart", "c1", "--dry-run")
    assert (code, out) == (
        0,
        f"would archive cart 'c1': 2 events in {url} (dry run: nothing changed)\n",
    )
    assert rows(url, "c1") == before
    code, out = cli("archive", url, "cart", "c1", answer="n\n")
    assert code == 1
    assert "Archive cart 'c1': 2 events in" in out
    assert "Aborted" in out
    assert rows(url, "c1") == before
    code, out = cli("archive", url, "cart", "c1", answer="y\n")
    assert code == 0
    assert out.endswith("archive: cart 'c1', 2 events\n")
    assert rows(url, "c1") == []
    code, out = cli("archive", url, "cart", "c1", "--yes")
    assert code == 1
    assert "cart 'c1' is archived" in out
    code, out = cli("history", url, "cart", "c1")
    assert (code, out.strip()) == (
        1,
        "Error: cart 'c1' is archived (2 events in eventsignal_archive)",
    )
    code, out = cli("restore", url, "cart", "c1", "--dry-run")
    assert "would restore cart 'c1': 2 events (it is archived)" in out
    code, out = cli("restore", url, "cart", "c1", "--yes")
    assert (code, out) == (0, "restore: cart 'c1', 2 events\n")
    assert rows(url, "c1") == before


def test_delete(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out = cli("delete", url, "cart", "c1", "--dry-run")
    assert "would delete cart 'c1' for good: 2 events" in out
    code, out = cli("delete", url, "cart", "c1", "-y")
    assert code == 0
    assert out.startswith("delete: cart 'c1', 2 events, deletion recorded at position 4")
    assert [name for _, _, name in rows(url, "c1")] == ["eventsignal.StreamDeleted"]
    code, out = cli("delete", url, "cart", "c1", "-y")
    assert code == 1
    assert "cart 'c1' was deleted" in out
    assert cli("history", url, "cart", "c1") == (1, "Error: cart 'c1' is deleted\n")
    code, out = cli("delete", url, "cart", "nobody", "-y")
    assert (code, out.strip()) == (1, "Error: cart 'nobody' not found")


def test_truncate_needs_a_stored_snapshot(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out = cli("truncate", url, "cart", "c1", "--before", "2", "--dry-run")
    assert "would truncate cart 'c1' before version 2: 1 event of 2" in out
    code, out = cli("truncate", url, "cart", "c1", "--before", "2", "--yes")
    assert code == 1
    assert "cannot truncate before version 2: it has no snapshot" in out
    assert len(rows(url, "c1")) == 2


def test_an_aggregate_the_store_never_had() -> None:
    code, out = cli("archive", "memory:", "cart", "c1", "--yes")
    assert (code, out.strip()) == (1, "Error: cart 'c1' not found")
