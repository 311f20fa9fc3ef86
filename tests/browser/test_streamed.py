"""Streamed pages in headless Chromium, with JavaScript on and off: one response fills the page."""

from __future__ import annotations

import itertools
import os
import re
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

    def __init__(self, server: Hypercorn, page: Page, names: tuple[str, ...] = NAMES) -> None:
        self.server = server
        self.page = page
        self.names = names
        self.run = f"b{next(_runs)}"
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def open(self, deadline: float = PAGE_DEADLINE) -> None:
        """Start loading the page; return as soon as its response has begun."""
        names = ",".join(self.names)
        url = f"{self.server.url}/page/{self.run}?names={names}&deadline={deadline}"
        self.page.goto(url, wait_until="commit")

    def post(self, action: str, name: str) -> None:
        response = httpx.post(f"{self.server.url}/{action}/{self.run}-{name}", timeout=10)
        assert response.status_code == 200

    def placeholder(self, name: str) -> Locator:
        return self.page.locator(f'[data-fragment="/part/{self.run}-{name}"]')

    def chunk(self, name: str) -> Locator:
        """What the server streamed for ``name``: a child of <wl-page> filling its slot."""
        slot = f"wl-{self.names.index(name)}"
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
        return [self.names[int(slot.removeprefix("wl-"))] for slot in slots]


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
            # Its content goes where a streamed one would: a chunk of <wl-page> filling its slot.
            streamed.expect_inside(streamed.chunk("late").locator(".part"), "late")
            expect(late).to_have_attribute("data-fragment-state", "loaded")
            # Retry works on the streamed error box, once the fragment is fixed.
            streamed.post("fix", "failing")
            streamed.chunk("failing").locator("[data-fragment-retry]").click()
            streamed.expect_inside(streamed.chunk("failing").locator(".part"), "failing")
            expect(page.locator(".wl-error")).to_have_count(0)
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


# Records each workerless:load and workerless:error event as it fires: whether the document was
# still loading, and whether its target is the streamed chunk holding the fragment's HTML.
RECORD_ARRIVALS = """
window.arrivals = [];
for (const type of ["workerless:load", "workerless:error"]) {
  document.addEventListener(type, (event) => window.arrivals.push({
    type: type,
    url: event.detail.url,
    loading: document.readyState === "loading",
    chunk: event.target === event.detail.content && event.target.matches("wl-page > .wl-chunk"),
    html: event.target.innerHTML,
  }));
}
"""


def readme_page_script() -> str:
    """The page script of the README's "Streamed page" section, as written there."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"### Streamed page\n.*?```js\n(.*?)```", readme, re.S)
    assert match is not None
    return match.group(1)


def test_streamed_events_fire_as_each_fragment_arrives(browser: Browser, server: Hypercorn) -> None:
    """With JavaScript, workerless:load (and workerless:error) fire for a streamed fragment as
    it arrives, while later ones are still pending, on the light-DOM chunk holding its HTML;
    workerless.fragments() finds the placeholders inside the shadow root (the README's script)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(RECORD_ARRIVALS)
        page.add_init_script(readme_page_script())
        streamed = Streamed(server, page, names=("a", "failing", "b"))
        # Far past the test's own steps: the response stays open until the last release.
        streamed.open(deadline=60)
        expect(page.locator("#skeleton")).to_be_visible()
        page.wait_for_function("window.workerless !== undefined")
        urls = page.evaluate("workerless.fragments().map((e) => e.dataset.fragment)")
        assert urls == [f"/part/{streamed.run}-{name}" for name in streamed.names]

        for count, name in enumerate(("b", "failing"), start=1):
            streamed.post("release", name)
            page.wait_for_function(f"window.arrivals.length >= {count}")
        arrivals = page.evaluate("window.arrivals")
        assert [(event["type"], event["url"]) for event in arrivals] == [
            ("workerless:load", f"/part/{streamed.run}-b"),
            ("workerless:error", f"/part/{streamed.run}-failing"),
        ]
        assert all(event["loading"] and event["chunk"] for event in arrivals)
        assert f'data-name="{streamed.run}-b"' in arrivals[0]["html"]
        assert "could not be loaded" in arrivals[1]["html"]
        # The page's own scripts find streamed HTML in the document, no shadow root needed.
        expect(page.locator(f'wl-page > .wl-chunk [data-name="{streamed.run}-b"]')).to_be_visible()

        streamed.post("release", "a")
        page.wait_for_load_state("load")
        assert len(page.evaluate("window.arrivals")) == 3
        for name in ("a", "b"):
            expect(streamed.chunk(name)).to_have_class(re.compile(r"\barrived\b"))
        failed = page.evaluate("failedFragments().map((e) => e.dataset.fragment)")
        assert failed == [f"/part/{streamed.run}-failing"]
        assert streamed.errors == []
    finally:
        context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_a_fragment_leaving_tags_open_spoils_nothing(
    browser: Browser, server: Hypercorn, javascript: bool
) -> None:
    """A fragment whose HTML leaves an element open, streamed first, does not swallow the
    fragments after it: each shows in its placeholder; the open one is fetched on its own with
    JavaScript, a link without."""
    context = browser.new_context(java_script_enabled=javascript)
    try:
        page = context.new_page()
        streamed = Streamed(server, page, names=("a", "unclosed", "b"))
        streamed.open(deadline=60)
        expect(page.locator("#skeleton")).to_be_visible()
        for name in ("unclosed", "a", "b"):
            streamed.post("release", name)
        page.wait_for_load_state("load")
        for name in ("a", "b"):
            streamed.expect_inside(streamed.chunk(name).locator(".part"), name)
        if javascript:
            streamed.expect_inside(streamed.chunk("unclosed").locator(".part"), "unclosed")
        else:
            streamed.expect_inside(streamed.chunk("unclosed").locator("a.wl-fallback"), "unclosed")
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
