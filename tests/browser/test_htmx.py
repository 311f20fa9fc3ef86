"""htmx 2 (the vendored npm file) with the workerless extension, in Chromium, from the README."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_pages import ClientPage, client_page, clients_server
from playwright.sync_api import Browser, Locator, expect
from servers import Hypercorn

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypercorn]:
    with clients_server(tmp_path_factory.mktemp("htmx")) as served:
        yield served


@pytest.fixture
def htmx(browser: Browser, server: Hypercorn) -> Iterator[ClientPage]:
    with client_page(browser, server) as page:
        page.open("htmx")
        yield page


def fragment(page: ClientPage, name: str) -> Locator:
    return page.page.locator(f'[hx-get="{page.url(name)}"]')


def test_fast_fragment_replaces_the_spinner(htmx: ClientPage) -> None:
    """A fragment computed in time is swapped in by htmx, spinner gone, no console error."""
    slot = fragment(htmx, "fast")
    expect(slot.locator(".content")).to_have_text("fast content")
    expect(slot.locator(".wl-spinner")).to_have_count(0)
    assert htmx.statuses("fast") == [200]
    assert htmx.console_errors == []


def test_past_deadline_fragment_keeps_its_spinner_through_202(htmx: ClientPage) -> None:
    """After a 202 the spinner stays shown (not swapped out), then the content replaces it."""
    slot = fragment(htmx, "slow")
    expect(slot).to_have_attribute("data-workerless-state", "pending")
    expect(slot.locator(".wl-spinner")).to_be_visible()  # kept and shown, not a blank slot
    assert htmx.statuses("slow")[:1] == [202]

    expect(slot.locator(".content")).to_have_text("slow content")
    expect(slot.locator(".wl-spinner")).to_have_count(0)
    assert htmx.statuses("slow")[0] == 202
    assert htmx.statuses("slow")[-1] == 200
    assert htmx.console_errors == []


def test_failing_fragment_shows_an_error_box_whose_retry_loads_it(htmx: ClientPage) -> None:
    """A 502 swaps in the error box; its Retry button asks again and the content comes."""
    slot = fragment(htmx, "failing")
    expect(slot.locator(".wl-error")).to_contain_text("could not be loaded (HTTP 502)")
    assert htmx.statuses("failing") == [502]

    slot.locator("button.wl-retry").click()
    expect(slot.locator(".content")).to_have_text("failing content, after a retry")
    expect(slot.locator(".wl-error")).to_have_count(0)
    assert htmx.statuses("failing") == [502, 200]
    assert htmx.console_errors == []
