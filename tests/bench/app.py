"""The benchmark's server: workerless fragments beside what users would write instead.

Served as ``bench.app:app`` by ``hypercorn --worker-class trio``; workerless reads its
settings (the store above all) from the ``WORKERLESS_*`` variables.  Every route that
computes counts its computations per key (``GET /bench/stats?prefix=``) and answers a JSON
body naming the process that computed it and the moment the computation ended
(``time.monotonic()``: CLOCK_MONOTONIC, one clock for every process of the machine), so the
client can tell how long the result took to reach it.  A computation sleeps ``?t=`` seconds,
or with ``?gate=1`` waits until ``POST /bench/release``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import trio
from quart import Response, request
from quart_trio import QuartTrio

from workerless import Workerless

__all__ = ["PAYLOAD", "app", "workerless"]

app = QuartTrio(__name__)
workerless = Workerless(app)

# What the hit-overhead routes both answer: a small server-rendered fragment.
PAYLOAD = (
    '<section class="fragment" id="recommendations"><h2>Recommended for you</h2><ul>'
    + "".join(f'<li><a href="/item/{i}">Item number {i}</a></li>' for i in range(24))
    + "</ul></section>\n"
)

computations: Counter[str] = Counter()
release = trio.Event()
held = 0
aside_cache: dict[str, str] = {}
worker_results: dict[str, str] = {}
worker_enqueued: set[str] = set()


async def compute(key: str, seconds: float, gated: bool) -> str:
    """The slow work every pattern runs: counted, then a sleep or a wait for the release."""
    global held
    computations[key] += 1
    if gated:
        held += 1
        try:
            await release.wait()
        finally:
            held -= 1
    else:
        await trio.sleep(seconds)
    return json.dumps({"key": key, "pid": os.getpid(), "done": time.monotonic()})


def _work_args() -> tuple[float, bool]:
    return float(request.args.get("t", "0")), request.args.get("gate") == "1"


@app.get("/bare")
async def bare() -> str:
    return PAYLOAD


@workerless.fragment("/fragment")
async def fragment() -> str:
    return PAYLOAD


@workerless.fragment("/wl/<key>")
async def slow_fragment(key: str) -> Response:
    body = await compute(key, *_work_args())
    return Response(body, content_type="application/json")


# Freshness (scenario 7): a short ttl, with a stale window or without one.
FRESH_TTL = 1.0  # bench.freshness.FRESH_TTL says the same


@workerless.fragment("/fresh/stale/<key>", ttl=FRESH_TTL, stale=60, stale_if_error=0)
async def stale_fragment(key: str) -> Response:
    body = await compute(key, *_work_args())
    return Response(body, content_type="application/json")


@workerless.fragment("/fresh/plain/<key>", ttl=FRESH_TTL, stale=0, stale_if_error=0)
async def plain_fragment(key: str) -> Response:
    body = await compute(key, *_work_args())
    return Response(body, content_type="application/json")


@workerless.fragment("/fresh/page/<key>", ttl=600)
async def page_fragment(key: str) -> str:
    computations[key] += 1
    return PAYLOAD


@app.get("/aside/<key>")
async def cache_aside(key: str) -> Response:
    # What most apps do: look in a cache, compute on a miss, store; no single flight.
    body = aside_cache.get(key)
    if body is None:
        body = await compute(key, *_work_args())
        aside_cache[key] = body
    return Response(body, content_type="application/json")


@app.get("/worker/<key>")
async def worker_pattern(key: str) -> Response:
    # rack-worker's middleware: serve the stored response, else enqueue the job once and
    # answer an empty 202; the client polls.  Our queue is the app's nursery.
    body = worker_results.get(key)
    if body is not None:
        return Response(body, content_type="application/json")
    if key not in worker_enqueued:
        worker_enqueued.add(key)
        app.nursery.start_soon(_worker_job, key, *_work_args())
    return Response(b"", status=202, content_type="text/plain")


async def _worker_job(key: str, seconds: float, gated: bool) -> None:
    worker_results[key] = await compute(key, seconds, gated)


@app.get("/sleep/<key>")
async def sleeping(key: str) -> Response:
    """A bare route that holds its request as long as a fragment would, with no cache."""
    body = await compute(key, *_work_args())
    return Response(body, content_type="application/json")


@app.get("/bench/stats")
async def stats() -> Response:
    prefix = request.args.get("prefix", "")
    counted = sum(n for key, n in computations.items() if key.startswith(prefix))
    body = {"pid": os.getpid(), "computations": counted, "held": held}
    return Response(json.dumps(body), content_type="application/json")


@app.post("/bench/release")
async def release_held() -> Response:
    release.set()
    return Response(b"", status=204)
