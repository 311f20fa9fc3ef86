"""Headless Debian Chromium driven by Playwright's sync API, and a fresh demo server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_page import DemoPage
from playwright.sync_api import Browser, expect, sync_playwright
from servers import Hypercorn, hypercorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Short enough for quick tests; the slow fragment still outlasts its deadline, so 202 comes first.
DEMO_ENV = {
    "WORKERLESS_STORE": "memory://",
    "WORKERLESS_DEMO_FRAGMENT_SECONDS": "1",
    "WORKERLESS_DEMO_SLOW_SECONDS": "3",
    "WORKERLESS_DEMO_HEAVY_SECONDS": "0.5",
    "WORKERLESS_DEMO_SLOW_DEADLINE": "1",
    "WORKERLESS_DEMO_FRESH_TTL": "1",
}
# Generous: the slow and failing fragments take ~3 s each, and CI machines are noisy.
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (each test gets its own context)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"no {CHROMIUM}: apt-get install -y chromium")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Hypercorn]:
    """A fresh demo server: an empty cache, the failure switch on, no computation running."""
    with hypercorn("workerless.demo:app", tmp_path, env=DEMO_ENV) as server:
        yield server
        # Nothing about its shutdown is tested here, and a graceful stop takes seconds.
        server.kill()


@pytest.fixture
def demo(browser: Browser, demo_server: Hypercorn) -> Iterator[DemoPage]:
    """A page in a fresh browser context (no HTTP cache or cookies shared between tests)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, color_scheme="light")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield DemoPage(demo_server.url, context.new_page())
    finally:
        context.close()
