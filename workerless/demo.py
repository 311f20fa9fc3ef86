"""The talk's demo: a skeleton page whose fragments come from a slow external API.

Run it with ``hypercorn --worker-class trio workerless.demo:app`` and open the page; ``/streamed``
shows the same cards in one streamed response.
Fragments a, b and c take 0 to 3 s at random and are cached; ``slow`` takes longer than its
deadline (the 202 path); ``fresh`` is served stale while it refreshes; ``failing`` raises
while the failure switch is on (the error path); ``heavy`` burns CPU on a
``workerless worker`` process when the demo runs with a Redis store (in a thread here
otherwise): see the README's "Worker-computed fragments".
``WORKERLESS_DEMO_FRAGMENT_SECONDS``, ``..._SLOW_SECONDS``, ``..._SLOW_DEADLINE`` and
``..._FRESH_TTL`` change the timings (the browser tests shorten them).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Response, abort, render_template, request
from quart_trio import QuartTrio

from . import Workerless, stream_template

__all__ = ["app", "workerless"]

app = QuartTrio(__name__)
workerless = Workerless(app, ttl=60)

FRAGMENT_SECONDS = float(os.environ.get("WORKERLESS_DEMO_FRAGMENT_SECONDS", "3"))
SLOW_SECONDS = float(os.environ.get("WORKERLESS_DEMO_SLOW_SECONDS", "6"))
SLOW_DEADLINE = float(os.environ.get("WORKERLESS_DEMO_SLOW_DEADLINE", "2"))
FRESH_TTL = float(os.environ.get("WORKERLESS_DEMO_FRESH_TTL", "10"))
HEAVY_SECONDS = float(os.environ.get("WORKERLESS_DEMO_HEAVY_SECONDS", "2"))
# Worker-computed fragments need Redis: with the embedded store the heavy card runs here.
ON_WORKERS = os.environ.get("WORKERLESS_STORE", "").startswith(("redis", "unix"))
MAX_NAME = 40


@dataclass(frozen=True)
class DemoFragment:
    name: str
    url: str
    title: str
    kind: str
    description: str


NORMAL = f"An external API call: 0 to {FRAGMENT_SECONDS:g} s."
FRAGMENTS = [
    DemoFragment("a", "/fragment/a", "Fragment A", "normal", NORMAL),
    DemoFragment("b", "/fragment/b", "Fragment B", "normal", NORMAL),
    DemoFragment("c", "/fragment/c", "Fragment C", "normal", NORMAL),
    DemoFragment(
        "slow",
        "/slow",
        "Slow fragment",
        "slow",
        f"Takes {SLOW_SECONDS:g} s, past its {SLOW_DEADLINE:g} s deadline: the server answers "
        "202 and the browser asks again until it is done.",
    ),
    DemoFragment(
        "fresh",
        "/fresh",
        "Always fast",
        "stale",
        f"Cached {FRESH_TTL:g} s, then served stale at once while one refresh runs "
        "(stale-while-revalidate): reload after that and it never shows a spinner.",
    ),
    DemoFragment(
        "failing",
        "/failing",
        "Failing fragment",
        "failing",
        "Its upstream is down while the switch above is on: errors are never cached.",
    ),
    DemoFragment(
        "heavy",
        "/heavy",
        "Heavy fragment",
        "heavy",
        f"{HEAVY_SECONDS:g} s of CPU, computed by a workerless worker process and pushed to "
        "this held request (with Redis; in a thread of the web process without).",
    ),
]


class Upstream:
    """The simulated slow external API of the talk (``performSlowExternalCall``)."""

    failing = True

    async def slow_find(self, query: str) -> str:
        await trio.sleep(random.uniform(0, FRAGMENT_SECONDS))
        return f"result for {query}"


upstream = Upstream()


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def _page_context(streamed: bool) -> dict[str, Any]:
    return {
        "fragments": FRAGMENTS,
        "failing_enabled": upstream.failing,
        "slow_deadline": SLOW_DEADLINE,
        "slow_seconds": SLOW_SECONDS,
        "fresh_ttl": FRESH_TTL,
        "streamed": streamed,
    }


@app.get("/")
async def index() -> str:
    """The fetched page: the skeleton, then one request per fragment from workerless.js."""
    return await render_template("demo/index.html", **_page_context(False))


@app.get("/streamed")
async def streamed() -> Response:
    """The same cards in one response: each fragment streamed in as it completes."""
    return await stream_template("demo/index.html", **_page_context(True))


async def _fragment_html(name: str, content: str, started: float) -> str:
    return await render_template(
        "demo/fragment.html",
        name=name,
        content=content,
        computed_at=_now(),
        took=trio.current_time() - started,
    )


@workerless.fragment("/fragment/<name>")
async def fragment(name: str) -> str:
    if len(name) > MAX_NAME:
        abort(404)
    started = trio.current_time()
    return await _fragment_html(name, await upstream.slow_find(name), started)


@workerless.fragment("/slow", deadline=SLOW_DEADLINE)
async def slow() -> str:
    started = trio.current_time()
    await trio.sleep(SLOW_SECONDS)
    return await _fragment_html("slow", "worth the wait", started)


@workerless.fragment("/fresh", ttl=FRESH_TTL, stale=3600)
async def fresh() -> str:
    started = trio.current_time()
    return await _fragment_html("fresh", await upstream.slow_find("fresh"), started)


@workerless.fragment("/failing")
async def failing() -> str:
    started = trio.current_time()
    await trio.sleep(0.3)
    if upstream.failing:
        raise RuntimeError("the demo's upstream is down (switch it back on in the page)")
    return await _fragment_html("failing", "the upstream is back", started)


def _burn(seconds: float) -> int:
    rounds, give_up = 0, time.monotonic() + seconds
    while time.monotonic() < give_up:
        rounds += 1
    return rounds


@workerless.fragment("/heavy", compute="worker" if ON_WORKERS else "here", queue="demo")
async def heavy() -> str:
    started = trio.current_time()
    rounds = await trio.to_thread.run_sync(_burn, HEAVY_SECONDS)
    where = f"process {os.getpid()}" + (" (a worker)" if ON_WORKERS else "")
    return await _fragment_html("heavy", f"{rounds:,} rounds on {where}", started)


@app.post("/demo/clear-cache")
async def clear_cache() -> dict[str, int]:
    return {"cleared": await workerless.invalidate_prefix("/")}


@app.post("/demo/failing")
async def set_failing() -> dict[str, bool]:
    body = await request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("fail"), bool):
        abort(400, 'expected JSON {"fail": true|false}')
    upstream.failing = body["fail"]
    return {"fail": upstream.failing}
