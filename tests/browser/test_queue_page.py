"""The queue page in headless Chromium: figures update without a reload, dead letters can be
retried and deleted, and the console stays clean."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_py
from playwright.sync_api import Browser, Page, expect
from servers import ROOT, Hypercorn, RedisServer, hypercorn

pytestmark = [pytest.mark.browser, pytest.mark.redis]

TOKEN = "page-token"
SCREENSHOT = ROOT / "tests" / "artifacts" / "queue.png"
# Committed and shown in the README; rewritten only on request, so test runs leave git clean.
README_SCREENSHOT = ROOT / "static" / "screenshots" / "queue.png"


@pytest.fixture
def server(redis: RedisServer, tmp_path: Path) -> Iterator[Hypercorn]:
    """``workerless.queue:app`` on the session's Redis, one failure and the job is dead."""
    env = {"WORKERLESS_QUEUE_URL": redis.url, "WORKERLESS_QUEUE_TOKEN": TOKEN,
           "WORKERLESS_QUEUE_MAX_ATTEMPTS": "1"}  # fmt: skip
    with hypercorn("workerless.queue:app", tmp_path, env=env) as running:
        yield running
        running.kill()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 700}, color_scheme="light")
    try:
        yield context.new_page()
    finally:
        context.close()


def test_page_updates_figures_live_and_handles_dead_letters(server: Hypercorn, page: Page) -> None:
    """After the token is given, posting jobs raises the queue's figures on the open page
    without a reload; a dead job shows with its error, Retry puts it back, Delete removes
    it; no console errors on the way."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    queue, other = f"mail{secrets.token_hex(2)}", f"thumbs{secrets.token_hex(2)}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as api:
        api.post(f"/q/{other}", json={"size": 128})
        page.goto(server.url + "/")
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        expect(page.locator("#token-form")).to_be_hidden()
        row = page.locator(f'#queues tr[data-queue="{queue}"]')
        expect(page.locator(f'#queues tr[data-queue="{other}"]')).to_be_visible()
        expect(row).to_have_count(0)
        for i in range(3):
            api.post(f"/q/{queue}", json={"to": f"user{i}@example.org"})
        expect(row.locator('[data-field="length"]')).to_have_text("3")
        job = api.get(f"/q/{queue}").json()
        api.post(f"/q/{queue}/{job['id']}/fail", params={"lease": job["lease"]},
                 json={"reason": "SMTP said 550"})  # fmt: skip
        expect(row.locator('[data-field="dead"]')).to_have_text("1")
        expect(row.locator('[data-field="length"]')).to_have_text("2")
        dead = page.locator(f'#dead tr[data-job="{job["id"]}"]')
        expect(dead).to_contain_text("SMTP said 550")
        taken = api.get(f"/q/{queue}").json()
        expect(row.locator('[data-field="pending"]')).to_have_text("1")
        page.screenshot(path=str(SCREENSHOT))
        dead.get_by_role("button", name="Retry").click()
        expect(dead).to_have_count(0)
        expect(row.locator('[data-field="length"]')).to_have_text("2")
        again = api.get(f"/q/{queue}").json()
        api.post(f"/q/{queue}/{again['id']}/fail", params={"lease": again["lease"]},
                 json={"reason": "still 550"})  # fmt: skip
        dead = page.locator(f'#dead tr[data-job="{again["id"]}"]')
        dead.get_by_role("button", name="Delete").click()
        expect(dead).to_have_count(0)
        expect(row.locator('[data-field="dead"]')).to_have_text("0")
        assert api.get(f"/q/{queue}/{again['id']}").status_code == 404
        api.post(f"/q/{queue}/{taken['id']}/done", params={"lease": taken["lease"]})
        expect(row.locator('[data-field="done"]')).to_have_text("1")
    assert errors == []
    if os.environ.get("WORKERLESS_UPDATE_SCREENSHOT") or not README_SCREENSHOT.exists():
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOT, README_SCREENSHOT)


def test_page_asks_again_for_a_refused_token(server: Hypercorn, page: Page) -> None:
    """A wrong token brings the token form back with a message, and no figures are shown."""
    page.goto(server.url + "/")
    page.fill("#token", "wrong")
    page.click("#token-form button")
    expect(page.locator("#token-error")).to_have_text("The token was refused.")
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#queues tbody tr")).to_have_count(0)


def test_page_shows_fragment_jobs_and_deletes_their_dead_letters(
    server: Hypercorn, redis: RedisServer, page: Page
) -> None:
    """A queue holding only compute="worker" fragment jobs (written as the web side and the
    worker write them) shows its waiting and dead jobs; a dead one has Delete and no Retry."""
    queue = f"reports{secrets.token_hex(2)}"
    store = redis_py.Redis.from_url(redis.url, socket_timeout=5)
    stream = f"workerless:fragments:{queue}"
    store.xadd(stream, {"job": json.dumps({"key": "/report/1", "attempt": 0})})
    store.sadd("workerless:queues", queue)
    record = {"job": {"key": "/report/2", "attempt": 2}, "reason": "RuntimeError: boom"}
    entry = store.xadd(f"{stream}:dead", {"job": json.dumps(record)}).decode()
    page.goto(server.url + "/")
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    row = page.locator(f'#queues tr[data-queue="{queue}"]')
    expect(row.locator('[data-field="length"]')).to_have_text("1")
    expect(row.locator('[data-field="dead"]')).to_have_text("1")
    dead = page.locator(f'#dead tr[data-job="{entry}"]')
    expect(dead).to_contain_text("RuntimeError: boom")
    expect(dead.get_by_role("button", name="Retry")).to_have_count(0)
    dead.get_by_role("button", name="Delete").click()
    expect(dead).to_have_count(0)
    expect(row.locator('[data-field="dead"]')).to_have_text("0")
    assert store.xlen(f"{stream}:dead") == 0
