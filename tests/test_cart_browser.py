"""The cart in a real browser (Debian's chromium through Playwright), with and without JavaScript.

One server (``python -m eventsignal.cart`` on a free port and a temp SQLite file) and one browser
serve the whole module; each test opens its own browser context.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cart_process import cart_app
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with cart_app(tmp_path_factory.mktemp("cart")) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/services installs it", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def revenue_cents(page: Page, address: str) -> int:
    page.goto(f"{address}/revenue")
    text = page.locator("#revenue").inner_text()
    return int(text.replace(",", "").replace(".", ""))


def add(page: Page, sku: str, quantity: int, price: str) -> None:
    form = page.locator("form.add")
    form.get_by_label("SKU").fill(sku)
    form.get_by_label("Quantity").fill(str(quantity))
    form.get_by_label("Unit price (EUR)").fill(price)
    form.get_by_role("button", name="Add").click()


def shop(page: Page, address: str) -> None:
    """The whole flow; the same assertions hold with and without JavaScript."""
    before = revenue_cents(page, address)
    page.goto(f"{address}/")
    page.get_by_role("button", name="Open a new cart").click()
    expect(page).to_have_url(re.compile(r"/carts/[A-Za-z0-9_-]{22}$"))
    cart_url = page.url
    expect(page.locator("#cart")).to_contain_text("The cart is empty")
    expect(page.get_by_role("button", name="Pay 0.00 EUR")).to_be_disabled()

    add(page, "apple", 3, "1.20")
    expect(page.locator("td.sku")).to_have_text(["apple"])
    add(page, "<b>pear</b>", 1, "0,95")
    expect(page.locator("td.sku")).to_have_text(["apple", "<b>pear</b>"])  # markup as text
    expect(page.locator("#total")).to_have_text("4.55")

    page.get_by_role("button", name="Remove apple").click()
    expect(page.locator("td.sku")).to_have_text(["<b>pear</b>"])
    expect(page.locator("#total")).to_have_text("0.95")

    add(page, "<b>pear</b>", 2, "0.10")
    expect(page.get_by_role("alert")).to_have_text("<b>pear</b> is already in the cart")
    expect(page.locator("td.sku")).to_have_text(["<b>pear</b>"])
    assert page.url == cart_url  # refused without JavaScript too: back at the cart's address
    expect(page.locator("form.add").get_by_label("Unit price (EUR)")).to_have_value("0.10")
    page.reload()  # Refresh neither resends the form nor shows the old refusal
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.locator("td.sku")).to_have_text(["<b>pear</b>"])

    add(page, "fig", 2, "2.50")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.locator("#total")).to_have_text("5.95")
    page.get_by_role("button", name="Pay 5.95 EUR").click()
    expect(page.locator("#cart .paid")).to_have_text("Paid: 5.95 EUR")
    expect(page.locator("form.add")).to_have_count(0)
    assert page.url == cart_url

    assert revenue_cents(page, address) == before + 595

    page.goto(cart_url)
    page.get_by_role("link", name="History").click()
    page.go_back()  # Back shows the cart as it is now
    expect(page).to_have_url(cart_url)
    expect(page.locator("#cart .paid")).to_have_text("Paid: 5.95 EUR")
    page.go_forward()
    rows = page.locator("ol.history > li")
    expect(rows).to_have_count(6)  # created, apple and pear added, apple removed, fig, paid
    expect(rows.nth(1)).to_contain_text("Added 3 \u00d7 apple at 1.20 EUR.")
    expect(rows.nth(5)).to_contain_text("Paid 5.95 EUR.")
    raw = rows.nth(5).locator("details code")
    expect(raw).to_be_hidden()
    rows.nth(5).get_by_text("raw event").click()  # the raw event, one click away
    expect(raw).to_have_text('CartPaid {"total":595}')
    page.get_by_role("link", name="view cart at version 2", exact=True).click()
    expect(page.locator("h1")).to_contain_text("at version 2 of 5")
    expect(page.locator("td.sku")).to_have_text(["apple", "<b>pear</b>"])
    expect(page.locator("#total")).to_have_text("4.55")
    expect(page.locator("main form")).to_have_count(0)  # the past is read-only
    page.get_by_role("link", name="Version 3").click()
    expect(page).to_have_url(f"{cart_url}/versions/3")
    expect(page.locator("h1")).to_contain_text("at version 3 of 5")
    expect(page.locator("td.sku")).to_have_text(["<b>pear</b>"])
    page.go_back()  # Back steps back a version...
    expect(page).to_have_url(f"{cart_url}/versions/2")
    expect(page.locator("h1")).to_contain_text("at version 2 of 5")
    expect(page.locator("td.sku")).to_have_text(["apple", "<b>pear</b>"])
    page.go_forward()
    page.reload()  # ...and Refresh shows the version whose address is shown
    expect(page.locator("h1")).to_contain_text("at version 3 of 5")
    expect(page.locator("td.sku")).to_have_text(["<b>pear</b>"])


def test_shopping_with_htmx(browser: Browser, address: str, tmp_path: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{address}/")
        assert page.evaluate("typeof window.htmx") == "object", (
            "htmx was not loaded: scripts/setup installs it with "
            "'npm install --global --prefix .venv htmx.org@2'"
        )
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        refused: list[str] = []  # what the Content Security Policy blocked, if anything
        page.on(
            "console", lambda m: refused.append(m.text) if "Security Policy" in m.text else None
        )
        shop(page, address)
        assert refused == []
        # Adding, removing and paying swapped fragments in place: the cart page loaded only
        # when opened, reloaded on purpose, opened again after the revenue, and gone back to.
        assert sum(1 for url in loads if re.search(r"/carts/[A-Za-z0-9_-]{22}$", url)) == 4
        # Stepping to version 3 swapped it in and pushed its address: only the reload loaded it.
        assert sum(1 for url in loads if url.endswith("/versions/3")) == 1
    except Exception:
        page.screenshot(path=str(tmp_path / "htmx-failure.png"))
        raise
    finally:
        context.close()


def test_shopping_without_javascript(browser: Browser, address: str, tmp_path: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        shop(page, address)
    except Exception:
        page.screenshot(path=str(tmp_path / "no-js-failure.png"))
        raise
    finally:
        context.close()
