"""The htmx and Turbo test pages (tests/apps/clients_app.py) as the browser tests see them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Response
from servers import Hypercorn, hypercorn

# Chromium's own console line for any 5xx answer; the failing fragment gets a 502 on purpose.
EXPECTED_502 = re.compile(
    r"Failed to load resource: the server responded with a status of 502 \(.*\)"
)


@dataclass
class ClientPage:
    """One browser page on the htmx or Turbo test page, recording console errors and responses."""

    base_url: str
    page: Page
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    console_errors: list[str] = field(default_factory=list)
    responses: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)
        self.page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        source = message.location.get("url", "")
        if source == self.base_url + self.url("failing") and EXPECTED_502.fullmatch(message.text):
            return
        self.console_errors.append(f"{message.text} ({source})")

    def _on_page_error(self, error: Error) -> None:
        self.console_errors.append(f"uncaught: {error}")

    def _on_response(self, response: Response) -> None:
        self.responses.append((response.status, response.url.removeprefix(self.base_url)))

    def url(self, name: str) -> str:
        return f"/fragment/{name}?run={self.run}"

    def open(self, library: str) -> None:
        self.page.goto(f"{self.base_url}/{library}?run={self.run}")

    def statuses(self, name: str) -> list[int]:
        return [status for status, path in self.responses if path == self.url(name)]


@contextmanager
def clients_server(tmp_path: Path) -> Iterator[Hypercorn]:
    """The test app in a real hypercorn; fresh ``run`` queries give each test fresh keys."""
    with hypercorn("apps.clients_app:app", tmp_path) as server:
        yield server
        server.kill()  # nothing about its shutdown is tested here


@contextmanager
def client_page(browser: Browser, server: Hypercorn) -> Iterator[ClientPage]:
    """A page in a fresh browser context (no HTTP cache shared between tests)."""
    context = browser.new_context()
    try:
        yield ClientPage(server.url, context.new_page())
    finally:
        context.close()
