"""Turbo 8 frames (the vendored npm file) with workerless-turbo.js, in Chromium, from the README."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_pages import ClientPage, client_page, clients_server
from playwright.sync_api import Browser, Locator, expect
from servers import Hypercorn

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypercorn]:
    with clients_server(tmp_path_factory.mktemp("turbo")) as served:
        yield served


@pytest.fixture
def turbo(browser: Browser, server: Hypercorn) -> Iterator[ClientPage]:
    with client_page(browser, server) as page:
        page.open("turbo")
        yield page


def frame(page: ClientPage, name: str) -> Locator:
    return page.page.locator(f'turbo-frame[src$="{page.url(name)}"]')


def test_fast_fragment_fills_its_frame(turbo: ClientPage) -> None:
    """A fragment computed in time fills its frame (the library wrapped it), no console error."""
    slot = frame(turbo, "fast")
    expect(slot.locator(".content")).to_have_text("fast content")
    expect(slot.locator(".wl-spinner")).to_have_count(0)
    expect(slot).to_have_attribute("complete", "")
    assert turbo.statuses("fast") == [200]
    assert turbo.console_errors == []


def test_past_deadline_fragment_keeps_its_spinner_through_202(turbo: ClientPage) -> None:
    """After a 202 the frame keeps its spinner, reloads after Retry-After, then shows content."""
    slot = frame(turbo, "slow")
    expect(slot).to_have_attribute("data-workerless-state", "pending")
    expect(slot.locator(".wl-spinner")).to_be_visible()
    assert turbo.statuses("slow")[:1] == [202]

    expect(slot.locator(".content")).to_have_text("slow content")
    expect(slot.locator(".wl-spinner")).to_have_count(0)
    assert turbo.statuses("slow")[0] == 202
    assert turbo.statuses("slow")[-1] == 200
    assert turbo.console_errors == []


def test_failing_fragment_shows_an_error_frame_whose_retry_loads_it(turbo: ClientPage) -> None:
    """A 502 fills the frame with the error box; its Retry link reloads the frame to content."""
    slot = frame(turbo, "failing")
    expect(slot.locator(".wl-error")).to_contain_text("could not be loaded (HTTP 502)")
    assert turbo.statuses("failing") == [502]

    slot.locator("a.wl-retry").click()
    expect(slot.locator(".content")).to_have_text("failing content, after a retry")
    expect(slot.locator(".wl-error")).to_have_count(0)
    assert turbo.statuses("failing") == [502, 200]
    assert turbo.page.url.endswith(f"/turbo?run={turbo.run}")  # the frame moved, not the page
    assert turbo.console_errors == []
