"""The command line within one tenant, or over every tenant."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from eventsignal import Signal
from eventsignal.cart import AddToCart, Product, cart_config
from eventsignal.cli import main
from eventsignal.stores.urls import open_store


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def fill(url: str) -> None:
    """Cart c1 in tenants acme (one product) and globex (two), and in the default tenant."""

    async def job() -> None:
        async with Signal(cart_config, store=open_store(url), telemetry=None) as signal:
            for tenant, products in (("acme", 1), ("globex", 2), ("", 0)):
                view = signal.for_tenant(tenant)
                await view.create("c1")
                for i in range(products):
                    await view.handle_command("c1", AddToCart(Product(f"{tenant}-{i}", 1, 100)))

    asyncio.run(job())


def test_reading_commands_keep_to_the_tenant_named(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out, _ = cli("--tenant", "acme", "aggregates", url)
    assert code == 0
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [["acme", "cart", "c1", "1"]]
    code, out, _ = cli("--tenant", "globex", "history", url, "cart", "c1")
    assert code == 0
    assert "globex-1" in out
    assert "acme" not in out
    code, out, _ = cli("aggregates", url)  # the default tenant: no tenant column
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [["cart", "c1", "0"]]
    code, out, _ = cli("--all-tenants", "aggregates", url)
    assert sorted(line.split()[0] for line in out.splitlines()[1:]) == ["acme", "cart", "globex"]


def test_a_tenant_is_named_by_the_rules_and_writes_stay_within_it(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, _, err = cli("--tenant", "no such!", "aggregates", url)
    assert code == 1
    assert "tenant name" in err
    code, _, err = cli("--tenant", "acme", "--all-tenants", "aggregates", url)
    assert code == 2
    code, _, err = cli("--tenant", "acme", "archive", url, "cart", "c1", "--yes")
    assert code == 1
    assert "within a tenant" in err
