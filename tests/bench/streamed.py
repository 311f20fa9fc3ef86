"""Scenario 10, one streamed page: 12 fragments of 0-3 s in headless Chromium over HTTP/1.1
(6 connections per host), the page streamed in one response beside the same page fetched
fragment by fragment.  Each load uses fresh fragments (all cold) and a fresh browser context.

Per mode: the time until every fragment is shown (the last ``workerless:load`` event, from the
start of the navigation), the requests the page made (the document and its fragments, not the
static files), the time to the first byte and to the first contentful paint.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Request, sync_playwright
from servers import hypercorn

from .report import Row, Rows, ms, times
from .scenarios import QUICK, Outcome, Sizes

__all__ = ["streamed_page"]

FRAGMENTS = 12
GOAL = 1.1  # streamed: complete within this many times the slowest fragment
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RECORD_LOADS = """
window.loadedAt = [];
document.addEventListener("workerless:load", () => window.loadedAt.push(performance.now()));
"""
TIMINGS = """() => {
  const navigation = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  return {
    ttfb: navigation.responseStart / 1000,
    fcp: paint ? paint.startTime / 1000 : null,
    complete: Math.max(...window.loadedAt) / 1000,
    loaded: window.loadedAt.length,
  };
}"""


def streamed_page(store: str, sizes: Sizes, nonce: str, log_dir: Path) -> Outcome:
    """Both modes, taking turns, ``rounds`` loads each; the median of each figure."""
    quick = sizes == QUICK
    slowest = 1.5 if quick else 3.0
    rounds = 1 if quick else 3
    durations = [round(slowest * k / (FRAGMENTS - 1), 3) for k in range(FRAGMENTS)]
    random.Random(10).shuffle(durations)  # a fixed order, neither best nor worst case
    rows = Rows("10", store, "streamed page")
    loads: dict[str, list[dict[str, Any]]] = {"streamed": [], "fetched": []}
    with (
        hypercorn("bench.page_app:app", log_dir) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        try:
            for round_ in range(rounds):
                for mode in ("fetched", "streamed"):
                    run = f"{nonce}-{store}-{round_}-{mode}"
                    loads[mode].append(_load(browser, server.url, mode, run, durations))
        finally:
            browser.close()
    figures = {mode: _median(values) for mode, values in loads.items()}
    base = {"fragments": FRAGMENTS, "slowest_s": slowest, "rounds": rounds, "loads": loads}
    rows.run("page complete", lambda: _complete_row(store, figures, slowest, base))
    rows.run("first paint", lambda: _paint_row(store, figures, base))
    return rows.outcome()


def _load(
    browser: Browser, base_url: str, mode: str, run: str, durations: list[float]
) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(RECORD_LOADS)
        requests: list[str] = []

        def count(request: Request) -> None:
            if request.url.startswith(base_url) and "/workerless/static/" not in request.url:
                requests.append(request.url)

        page.on("request", count)
        query = ",".join(str(d) for d in durations)
        page.goto(f"{base_url}/{mode}/{run}?durations={query}", timeout=60_000)
        page.wait_for_function(
            f"window.loadedAt.length >= {len(durations)}", timeout=60_000, polling=20
        )
        timings: dict[str, Any] = page.evaluate(TIMINGS)
        timings["requests"] = len(requests)
        return timings
    finally:
        context.close()


def _median(values: list[dict[str, Any]]) -> dict[str, float]:
    return {
        name: statistics.median(v[name] for v in values)
        for name in ("ttfb", "fcp", "complete", "requests")
        if all(v[name] is not None for v in values)
    }


def _complete_row(
    store: str, figures: dict[str, dict[str, float]], slowest: float, base: dict[str, Any]
) -> tuple[dict[str, Any], Row]:
    streamed, fetched = figures["streamed"], figures["fetched"]
    ratio = streamed["complete"] / slowest
    met = "met" if ratio <= GOAL else "missed"
    row = Row(
        "10",
        f"One page, {FRAGMENTS} fragments of 0–{slowest:g} s, Chromium over HTTP/1.1: "
        "all fragments shown",
        store,
        f"streamed: {ms(streamed['complete'])}, {streamed['requests']:.0f} request",
        f"fetched: {ms(fetched['complete'])}, {fetched['requests']:.0f} requests",
        f"streamed = {times(ratio)} the slowest fragment (goal ≤ {GOAL}×: {met}); "
        f"fetched = {times(fetched['complete'] / slowest)}",
    )
    return {**base, "streamed": streamed, "fetched": fetched, "goal_met": ratio <= GOAL}, row


def _paint_row(
    store: str, figures: dict[str, dict[str, float]], base: dict[str, Any]
) -> tuple[dict[str, Any], Row]:
    streamed, fetched = figures["streamed"], figures["fetched"]
    row = Row(
        "10",
        "Same page: time to first byte and first contentful paint",
        store,
        f"streamed: first byte {ms(streamed['ttfb'])}, paint {ms(streamed.get('fcp'))}",
        f"fetched: first byte {ms(fetched['ttfb'])}, paint {ms(fetched.get('fcp'))}",
        f"paint: streamed {times(streamed.get('fcp', 0) / fetched['fcp'])} fetched's"
        if fetched.get("fcp")
        else "no paint entry",
    )
    return {"streamed": streamed, "fetched": fetched}, row
