"""Streamed pages in headless Chromium, with JavaScript on and off: one response fills the page."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect
from servers import Hypercorn, hypercorn

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "tests" / "artifacts" / "streamed.png"
# Committed and shown in the README; rewritten only on request, so test runs leave git clean.
README_SCREENSHOT = ROOT / "static" / "screenshots" / "streamed.png"
NAMES = ("a", "b", "c", "failing", "late")
# Room for the steps before it (three releases and their checks); "late" is never done by then.
PAGE_DEADLINE = 4
_runs = itertools.count()

# Records each workerless:load event, from the first line of the page on.
RECORD_EVENTS = """
window.loads = [];
document.addEventListener("workerless:load", (event) => window.loads.push(event.detail.url));
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypercorn]:
    """The test app of tests/apps/page_app.py: each test uses fragments of its own."""
    with hypercorn("apps.page_app:app", tmp_path_factory.mktemp("streamed")) as server:
        yield server
        server.kill()  # nothing about its shutdown is tested here


class Streamed:
    """One streamed page in the browser, and the fragments the test finishes one by one."""

    def __init__(self, server: Hypercorn, page: Page) -> None:
        self.server = server
        self.page = page
        self.run = f"b{next(_runs)}"
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def open(self) -> None:
        """Start loading the page; return as soon as its response has begun."""
        names = ",".join(NAMES)
        url = f"{self.server.url}/page/{self.run}?names={names}&deadline={PAGE_DEADLINE}"
        self.page.goto(url, wait_until="commit")

    def post(self, action: str, name: str) -> None:
        response = httpx.post(f"{self.server.url}/{action}/{self.run}-{name}", timeout=10)
        assert response.status_code == 200

    def placeholder(self, name: str) -> Locator:
        return self.page.locator(f'[data-fragment="/part/{self.run}-{name}"]')

    def chunk(self, name: str) -> Locator:
        """What the server streamed for ``name``: a child of <wl-page> filling its slot."""
        slot = f"wl-{NAMES.index(name)}"
        return self.page.locator(f'wl-page > [slot="{slot}"]')

    def expect_inside(self, inner: Locator, name: str) -> None:
        """``inner`` is shown within the placeholder of ``name`` (slotted, so laid out there)."""
        expect(inner).to_be_visible()
        box, outer = inner.bounding_box(), self.placeholder(name).bounding_box()
        assert box is not None and outer is not None
        for start, size in (("x", "width"), ("y", "height")):
            assert outer[start] <= box[start] + 1
            assert box[start] + box[size] <= outer[start] + outer[size] + 1

    def streamed_order(self) -> list[str]:
        slots: list[str] = self.page.eval_on_selector_all(
            "wl-page > [slot]", "elements => elements.map(e => e.slot)"
        )
        return [NAMES[int(slot.removeprefix("wl-"))] for slot in slots]


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_streamed_page_fills_in_completion_order(
    browser: Browser, server: Hypercorn, javascript: bool
) -> None:
    """The skeleton shows before any fragment is done; each fragment then appears in its own
    placeholder as it completes; the failing one shows its error box; the one past the page's
    deadline falls back (with JavaScript it is fetched, without it a link); no console error."""
    context = browser.new_context(java_script_enabled=javascript)
    try:
        page = context.new_page()
        page.add_init_script(RECORD_EVENTS)
        streamed = Streamed(server, page)
        streamed.open()
        expect(page.locator("#skeleton")).to_be_visible()
        for name in NAMES:
            expect(streamed.placeholder(name).locator(".wl-spinner")).to_be_visible()
        expect(page.locator(".part")).to_have_count(0)

        for name in ("b", "failing", "a", "c"):
            streamed.post("release", name)
            if name == "failing":
                streamed.expect_inside(streamed.chunk(name).locator(".wl-error"), name)
            else:
                streamed.expect_inside(streamed.chunk(name).locator(".part"), name)
        assert streamed.streamed_order() == ["b", "failing", "a", "c"]
        expect(page.locator(".part")).to_have_count(3)

        late = streamed.placeholder("late")
        if javascript:
            # Past the deadline the client script asks for it (held, then 202) until it is done.
            expect(late).to_have_attribute("data-fragment-state", "pending")
            streamed.post("release", "late")
            expect(late.locator(".part")).to_be_visible()
            expect(late).to_have_attribute("data-fragment-state", "loaded")
            # Retry works on the streamed error box, once the fragment is fixed.
            streamed.post("fix", "failing")
            streamed.chunk("failing").locator("[data-fragment-retry]").click()
            failing = streamed.placeholder("failing")
            expect(failing.locator(".part")).to_be_visible()
            assert sorted(page.evaluate("window.loads")) == sorted(
                f"/part/{streamed.run}-{name}" for name in ("a", "b", "c", "failing", "late")
            )
        else:
            link = streamed.chunk("late").locator("a.wl-fallback")
            streamed.expect_inside(link, "late")
            expect(link).to_have_attribute("href", f"/part/{streamed.run}-late")
            streamed.post("release", "late")
        page.wait_for_load_state("load")
        assert streamed.errors == []
    finally:
        context.close()


def test_streamed_demo_page_without_javascript(browser: Browser, demo_server: Hypercorn) -> None:
    """The demo's /streamed page, scripts off: every card filled by the one response (the slow
    one as a link, the failing one as an error box), and it is screenshotted for the README."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(demo_server.url + "/streamed")
        for name in ("a", "b", "c", "fresh"):
            expect(page.locator(f'wl-page > .wl-chunk [data-name="{name}"]')).to_be_visible()
        expect(page.locator("wl-page > .wl-chunk a.wl-fallback[href='/slow']")).to_be_visible()
        expect(page.locator("wl-page > .wl-chunk .wl-error")).to_be_visible()
        expect(page.locator("#other-page")).to_have_attribute("href", "/")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True, animations="disabled")
        if os.environ.get("WORKERLESS_UPDATE_SCREENSHOT") or not README_SCREENSHOT.exists():
            README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SCREENSHOT, README_SCREENSHOT)
        assert errors == []
    finally:
        context.close()
