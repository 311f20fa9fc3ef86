"""Scenario 10's app: one page of slow fragments, streamed (``/streamed/<run>``) or fetched
(``/fetched/<run>``); ``?s=`` of a fragment is how long it takes, ``durations`` the page's.

Run as ``bench.page_app:app``; every ``run`` names fragments of its own, so each load is cold.
"""

from __future__ import annotations

import trio
from quart import Response, render_template, request
from quart_trio import QuartTrio

from workerless import Workerless, stream_template

app = QuartTrio(__name__)
workerless = Workerless(app, store="memory://", deadline=30)


def _context(run: str) -> dict[str, object]:
    durations = [float(s) for s in request.args.get("durations", "").split(",") if s]
    return {"run": run, "durations": durations, "count": len(durations)}


@app.get("/streamed/<run>")
async def streamed(run: str) -> Response:
    return await stream_template("bench_page.html", **_context(run))


@app.get("/fetched/<run>")
async def fetched(run: str) -> str:
    return await render_template("bench_page.html", **_context(run))


@workerless.fragment("/slow/<run>/<int:n>")
async def slow(run: str, n: int) -> str:
    await trio.sleep(request.args.get("s", 0.0, type=float))
    return f'<p class="done">fragment {n} of {run}</p>'
