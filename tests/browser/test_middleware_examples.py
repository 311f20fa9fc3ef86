"""The README's WorkerlessMiddleware examples (FastAPI, Starlette, QuartTrio) in Chromium: the
skeleton page's client script fills every placeholder with its cached fragment."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from servers import hypercorn

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name", ["example_fastapi", "example_starlette", "example_quart"])
def test_skeleton_page_loads_its_fragments(browser: Browser, tmp_path: Path, name: str) -> None:
    """workerless.js, served by the middleware, replaces both spinners with the fragments."""
    with hypercorn(f"apps.{name}:app", tmp_path) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            failed: list[str] = []  # the browser's own favicon request aside
            page.on(
                "response",
                lambda r: failed.append(r.url)
                if r.status >= 400 and not r.url.endswith("/favicon.ico")
                else None,
            )
            page.goto(server.url + "/")
            for fragment in ("a", "b"):
                slot = page.locator(f'[data-fragment="/fragment/{fragment}"]')
                expect(slot).to_have_attribute("data-fragment-state", "loaded")
                expect(slot).to_have_text(f"result for {fragment}")
            expect(page.locator(".wl-spinner")).to_have_count(0)
            assert failed == []
        finally:
            context.close()
        server.kill()  # nothing about its shutdown is tested here
