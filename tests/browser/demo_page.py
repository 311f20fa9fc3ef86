"""The demo page as the browser tests see it: its cards, and what the browser reported."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from playwright.sync_api import ConsoleMessage, Error, Locator, Page, Response, expect

NORMAL = ("a", "b", "c")
ALL = (*NORMAL, "slow", "fresh", "failing", "heavy")
URLS = {name: f"/fragment/{name}" for name in NORMAL} | {
    "slow": "/slow",
    "fresh": "/fresh",
    "failing": "/failing",
    "heavy": "/heavy",
}
# Chromium's own line for any 4xx/5xx answer; the failing fragment gets 502s on purpose.
EXPECTED_502 = re.compile(
    r"Failed to load resource: the server responded with a status of 502 \(.*\)"
)


@dataclass
class DemoPage:
    """One browser page on one demo server, recording console errors, responses and navigations."""

    base_url: str
    page: Page
    console_errors: list[str] = field(default_factory=list)
    responses: list[tuple[int, str]] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)  # by path, from the responses
    conditional: list[tuple[str, str]] = field(default_factory=list)  # (url, If-None-Match)

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)
        self.page.on("response", self._on_response)
        self.page.on("framenavigated", self._on_navigated)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        source = message.location.get("url", "")
        if source == self.base_url + URLS["failing"] and EXPECTED_502.fullmatch(message.text):
            return
        self.console_errors.append(f"{message.text} ({source})")

    def _on_page_error(self, error: Error) -> None:
        self.console_errors.append(f"uncaught: {error}")

    def _on_response(self, response: Response) -> None:
        path = response.url.removeprefix(self.base_url)
        self.responses.append((response.status, path))
        etag = response.headers.get("etag")
        if etag:
            self.etags[path] = etag
        tag = response.request.all_headers().get("if-none-match")
        if tag:
            self.conditional.append((response.url, tag))

    def transferred(self) -> dict[str, int]:
        """Bytes each resource of the current page moved over the network (headers included)."""
        entries = self.page.evaluate(
            "() => performance.getEntriesByType('resource').map(e => [e.name, e.transferSize])"
        )
        return {url.removeprefix(self.base_url): size for url, size in entries}

    def _on_navigated(self, frame: object) -> None:
        if frame == self.page.main_frame:
            self.navigations.append(self.page.url)

    def open(self) -> None:
        self.page.goto(self.base_url + "/")

    def card(self, name: str) -> Locator:
        return self.page.locator(f"section.demo-card#card-{name}")

    def placeholder(self, name: str) -> Locator:
        return self.card(name).locator(f'[data-fragment="{URLS[name]}"]')

    def badge(self, name: str) -> Locator:
        return self.card(name).locator(".demo-badge")

    def statuses(self, name: str) -> list[int]:
        return [status for status, path in self.responses if path == URLS[name]]

    def expect_loaded(self, name: str) -> None:
        placeholder = self.placeholder(name)
        expect(placeholder).to_have_attribute("data-fragment-state", "loaded")
        expect(placeholder).to_have_attribute("aria-busy", "false")
        expect(placeholder.locator(".demo-fragment")).to_be_visible()
        expect(placeholder.locator(".wl-spinner")).to_have_count(0)

    def expect_failed(self, name: str) -> None:
        placeholder = self.placeholder(name)
        expect(placeholder).to_have_attribute("data-fragment-state", "error")
        expect(placeholder).to_have_attribute("aria-busy", "false")
        expect(placeholder.locator(".wl-error")).to_be_visible()
        expect(placeholder.locator("button.wl-retry[data-fragment-retry]")).to_be_visible()
        expect(placeholder.locator(".wl-spinner")).to_have_count(0)

    def expect_finished(self) -> None:
        """Wait for the page's end state: every fragment loaded but the failing one, failed."""
        for name in (*NORMAL, "slow"):
            self.expect_loaded(name)
        self.expect_failed("failing")
        for name in ALL:
            expect(self.badge(name)).not_to_be_empty()

    def post(self, path: str, data: object = None) -> None:
        response = self.page.request.post(self.base_url + path, data=data)
        assert response.ok, f"POST {path}: HTTP {response.status}"

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Poll ``condition`` while Playwright keeps delivering events; fail after ``timeout``."""
        give_up = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > give_up:
                raise AssertionError(f"gave up after {timeout} s waiting for {what}")
            self.page.wait_for_timeout(50)
