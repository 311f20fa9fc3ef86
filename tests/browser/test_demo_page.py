"""The demo page in headless Chromium: skeleton, fragments, cache, the 202 and error paths."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from demo_page import ALL, NORMAL, URLS, DemoPage
from playwright.sync_api import Browser, Route, expect
from servers import Hypercorn

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "tests" / "artifacts" / "demo.png"
# Committed and shown in the README; rewritten only on request, so test runs leave git clean.
README_SCREENSHOT = ROOT / "static" / "screenshots" / "demo.png"
# Cache-Status (RFC 9211) parameters, whatever else the server adds beside them.
HIT = re.compile(r"^workerless;.*\bhit\b")
FORWARDED = re.compile(r"^workerless;.*\bfwd=miss\b")


def test_skeleton_html_has_a_spinner_in_every_placeholder(
    browser: Browser, demo_server: Hypercorn
) -> None:
    """The HTML of / (scripts off) has every fragment placeholder busy with a visible spinner."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(demo_server.url + "/")
        placeholders = page.locator("[data-fragment]")
        expect(placeholders).to_have_count(len(ALL))
        assert sorted(placeholders.evaluate_all("els => els.map(e => e.dataset.fragment)")) == (
            sorted(URLS.values())
        )
        for i in range(len(ALL)):
            placeholder = placeholders.nth(i)
            expect(placeholder).to_have_attribute("aria-busy", "true")
            expect(placeholder).to_have_attribute("data-fragment-state", "loading")
            expect(placeholder.locator(".wl-spinner")).to_be_visible()
    finally:
        context.close()


def test_live_page_shows_spinners_until_the_fragments_arrive(demo: DemoPage) -> None:
    """With the fragment answers held back, every spinner shows; released, content replaces them."""
    held: list[Route] = []
    released = False

    def hold(route: Route) -> None:
        if released:
            route.continue_()
        else:
            held.append(route)

    demo.page.route(lambda url: url.removeprefix(demo.base_url) in URLS.values(), hold)
    demo.open()
    demo.wait_until(lambda: len(held) == len(ALL), "a request for every fragment")
    for name in ALL:
        placeholder = demo.placeholder(name)
        expect(placeholder).to_have_attribute("aria-busy", "true")
        expect(placeholder.locator(".wl-spinner")).to_be_visible()
        expect(placeholder.locator(".demo-fragment")).to_have_count(0)

    released = True
    for route in held:
        route.continue_()
    for name in NORMAL:
        demo.expect_loaded(name)


def test_each_fragment_replaces_its_spinner(demo: DemoPage) -> None:
    """Each normal fragment's HTML replaces its placeholder's spinner, computed now (a miss)."""
    demo.open()
    for name in NORMAL:
        demo.expect_loaded(name)
        placeholder = demo.placeholder(name)
        expect(placeholder.locator(".demo-fragment")).to_have_attribute("data-name", name)
        expect(placeholder.locator(".demo-content")).to_have_text(f"result for {name}")
        expect(placeholder.locator(".demo-computed-at")).to_contain_text("computed at")
        expect(placeholder).to_have_attribute("data-cache-status", FORWARDED)
        expect(demo.badge(name)).to_have_attribute("data-source", "miss")


def test_reload_shows_cached_fragments(demo: DemoPage) -> None:
    """After a full load, a reload gets every fragment from the cache, with the same computed-at."""
    names = (*NORMAL, "slow")
    demo.open()
    for name in names:
        demo.expect_loaded(name)
    computed_at = {
        name: demo.placeholder(name).locator(".demo-computed-at").inner_text() for name in names
    }

    etags = {name: demo.etags[URLS[name]] for name in names}
    first_moved = demo.transferred()
    demo.responses.clear()
    demo.page.reload()
    for name in names:
        demo.expect_loaded(name)
        placeholder = demo.placeholder(name)
        expect(placeholder).to_have_attribute("data-cache-status", HIT)
        expect(demo.badge(name)).to_have_attribute("data-source", "hit")
        expect(demo.badge(name)).to_have_text("from cache")
        expect(placeholder.locator(".demo-computed-at")).to_have_text(computed_at[name])
        assert demo.statuses(name) == [200]
    # The browser kept each fragment and revalidated it with its ETag: a 304, no body moved.
    sent = {url.removeprefix(demo.base_url): tag for url, tag in demo.conditional}
    assert all(sent[URLS[name]] == etags[name] for name in names)
    moved = demo.transferred()
    assert all(moved[URLS[name]] < first_moved[URLS[name]] for name in names)


def test_fresh_fragment_is_served_stale_while_it_refreshes(demo: DemoPage) -> None:
    """Past its 1 s ttl the fresh card comes at once with the old value, badged 'stale,
    refreshing'; a later reload shows the refreshed value."""
    demo.open()
    demo.expect_loaded("fresh")
    computed = demo.placeholder("fresh").locator(".demo-computed-at")
    first = computed.inner_text()
    time.sleep(1.3)
    demo.page.reload()
    demo.expect_loaded("fresh")
    expect(demo.badge("fresh")).to_have_attribute("data-source", "stale")
    expect(demo.badge("fresh")).to_have_text("stale, refreshing")
    expect(computed).to_have_text(first)
    time.sleep(1.5)  # the refresh takes up to 1 s
    demo.page.reload()
    demo.expect_loaded("fresh")
    expect(computed).not_to_have_text(first)


def test_clear_cache_button_makes_the_fragments_compute_again(demo: DemoPage) -> None:
    """The Clear cache button empties the server's cache and reloads: fragments compute again."""
    demo.open()
    for name in NORMAL:
        demo.expect_loaded(name)
    computed_at = {
        name: demo.placeholder(name).locator(".demo-computed-at").inner_text() for name in NORMAL
    }

    with demo.page.expect_navigation():
        demo.page.locator("#clear-cache").click()
    for name in NORMAL:
        demo.expect_loaded(name)
        expect(demo.badge(name)).to_have_attribute("data-source", "miss")
        expect(demo.placeholder(name).locator(".demo-computed-at")).not_to_have_text(
            computed_at[name]
        )


def test_slow_fragment_keeps_its_spinner_through_202_then_shows_content(demo: DemoPage) -> None:
    """/slow answers 202 first: its spinner stays (pending) until its content comes, no reload."""
    demo.open()
    demo.page.evaluate("window.sameDocument = true")
    placeholder = demo.placeholder("slow")

    expect(placeholder).to_have_attribute("data-fragment-state", "pending")
    expect(placeholder).to_have_attribute("aria-busy", "true")
    expect(placeholder.locator(".wl-spinner")).to_be_visible()
    expect(demo.badge("slow")).to_have_attribute("data-source", "pending")
    assert 202 in demo.statuses("slow")

    demo.expect_loaded("slow")
    expect(placeholder.locator(".demo-content")).to_have_text("worth the wait")
    expect(demo.badge("slow")).to_contain_text("after")
    assert demo.statuses("slow")[0] == 202
    assert demo.statuses("slow")[-1] == 200
    assert demo.navigations == [demo.base_url + "/"]
    assert demo.page.evaluate("window.sameDocument") is True


def test_failing_fragment_shows_an_error_and_retry_loads_it_once_fixed(demo: DemoPage) -> None:
    """/failing ends in an error box with Retry; after the switch is turned off, Retry loads it."""
    demo.open()
    placeholder = demo.placeholder("failing")
    demo.expect_failed("failing")
    expect(placeholder.locator(".wl-error")).to_contain_text("HTTP 502")
    expect(demo.badge("failing")).to_have_attribute("data-source", "error")
    assert set(demo.statuses("failing")) == {502}

    toggle = demo.page.locator("#failing-toggle")
    expect(toggle).to_be_checked()
    with demo.page.expect_response(demo.base_url + "/demo/failing") as switched:
        toggle.uncheck()
    assert switched.value.ok
    placeholder.locator("button.wl-retry").click()

    demo.expect_loaded("failing")
    expect(placeholder.locator(".demo-content")).to_have_text("the upstream is back")
    expect(placeholder.locator(".wl-error")).to_have_count(0)
    expect(demo.badge("failing")).to_have_attribute("data-source", "miss")
    assert demo.statuses("failing")[-1] == 200


def test_no_console_errors(demo: DemoPage) -> None:
    """Loading, the 202s, the failure, Retry and Clear cache log no console error but the 502s."""
    demo.open()
    demo.expect_finished()
    demo.post("/demo/failing", {"fail": False})
    demo.placeholder("failing").locator("button.wl-retry").click()
    demo.expect_loaded("failing")
    with demo.page.expect_navigation():
        demo.page.locator("#clear-cache").click()
    for name in (*NORMAL, "failing"):
        demo.expect_loaded(name)

    assert 502 in demo.statuses("failing")
    assert demo.console_errors == []


def test_screenshot_of_the_finished_page(demo: DemoPage) -> None:
    """The finished page (all loaded, the failing fragment in its error state) is screenshotted."""
    demo.open()
    demo.expect_finished()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    demo.page.screenshot(path=SCREENSHOT, full_page=True, animations="disabled")
    assert SCREENSHOT.stat().st_size > 0
    if os.environ.get("WORKERLESS_UPDATE_SCREENSHOT") or not README_SCREENSHOT.exists():
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOT, README_SCREENSHOT)
