"""Every page of both web apps, in Debian's chromium at 1280 and 390 px: axe-core (the npm
package, injected by Playwright) finds no serious or critical accessibility violation, and a
screenshot of each page at each width is written to one folder.

The folder is ``$EVENTSIGNAL_SCREENSHOTS`` when set, else a fresh one under pytest's temporary
directory; the test prints where.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_process import stream_browser
from cart_process import cart_app
from playwright.sync_api import Browser, Page, sync_playwright
from test_cart_browser import CHROMIUM, CHROMIUM_ARGS
from test_stream_browser import SECRET, prepare

pytestmark = pytest.mark.browser

AXE = Path(sys.prefix) / "lib" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
SERIOUS = {"serious", "critical"}


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("EVENTSIGNAL_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of every page: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/services installs it", pytrace=False)
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE}: scripts/setup installs it", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def serious_violations(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        where: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))"""
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['where'])}"
        for v in found
        if v["impact"] in SERIOUS
    ]


def check_pages(
    browser: Browser, pages: dict[str, str], folder: Path, app: str, login: str | None = None
) -> None:
    problems: list[str] = []
    for width, height in WIDTHS.values():
        # The apps' Content Security Policy admits their own scripts only; axe is injected.
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        page = context.new_page()
        try:
            if login is not None:
                page.goto(login)
                page.get_by_label("Admin secret").fill(SECRET)
                page.get_by_role("button", name="Log in").click()
            for name, url in pages.items():
                page.goto(url)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(folder / f"{app}-{name}-{width}.png"), full_page=True)
                problems += [f"{name} at {width} px: {p}" for p in serious_violations(page)]
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                if overflow > 0:
                    problems.append(f"{name} at {width} px: {overflow} px wider than the screen")
        finally:
            context.close()
    assert not problems, "\n".join(problems)


def test_every_cart_page_is_accessible_at_both_widths(
    browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    with cart_app(tmp_path) as (host, port):
        address = f"http://{host}:{port}"
        context = browser.new_context()
        page = context.new_page()
        page.goto(address + "/")
        page.get_by_role("button", name="Open a new cart").click()
        empty = page.url
        page.goto(address + "/")
        page.get_by_role("button", name="Open a new cart").click()
        cart = page.url
        form = page.locator("form.add")
        form.get_by_label("SKU").fill("apple")
        form.get_by_label("Quantity").fill("3")
        form.get_by_label(re.compile("Unit price")).fill(page_price(page))
        form.get_by_role("button", name="Add").click()
        page.wait_for_load_state("networkidle")
        context.close()
        pages = {
            "home": f"{address}/",
            "empty-cart": empty,
            "cart": cart,
            "history": f"{cart}/history",
            "version": f"{cart}/versions/1",
            "revenue": f"{address}/revenue",
            "not-found": f"{address}/carts/nobody",
        }
        check_pages(browser, pages, screenshots, "cart")


def page_price(page: Page) -> str:
    """A unit price as the form asks for it (cents, or an amount of money)."""
    label = page.locator("form.add label", has_text="Unit price").inner_text()
    return "120" if "cents" in label else "1.20"


def test_every_stream_browser_page_is_accessible_at_both_widths(
    browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    database = tmp_path / "events.db"
    prepare(database)
    options = ["--app", "browser_app:configs", "--admin-secret", SECRET]
    with stream_browser(str(database), *options) as address:
        stream = f"{address}/streams/cart/cursed-1"
        pages = {
            "home": f"{address}/",
            "aggregates": f"{address}/aggregates?type=cart",
            "stream": f"{address}/streams/cart/c-1",
            "state": f"{stream}/state?version=1",
            "diff": f"{stream}/diff?from=1&to=2",
            "event": f"{address}/events/3",
            "log": f"{address}/log",
            "subscriptions": f"{address}/subscriptions",
            "subscription": f"{address}/subscriptions/browser-fragile",
            "models": f"{address}/models",
            "documents": f"{address}/models/browser-seen",
            "admin": f"{address}/admin",
            "not-found": f"{address}/streams/cart/nobody",
        }
        check_pages(browser, pages, screenshots, "browser", login=f"{address}/admin")
