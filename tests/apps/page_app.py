"""A streamed page whose fragments finish when a test says so (tests/test_page.py, browser tests).

Run as ``apps.page_app:app``.  ``/page/<run>?names=a,b&deadline=S`` streams fragments
``/part/<run>-<name>`` (and ``&extra=URL`` one more, any URL); ``/fetched/<run>?names=...``
is the same page in fetched mode.  A fragment finishes when ``POST /release/<run>-<name>`` is
called; one named ``failing`` raises until ``POST /fix/<run>-failing``; ``/calls/<id>`` says
how often a fragment's view ran.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import trio
from quart import Response, render_template, request
from quart_trio import QuartTrio

from workerless import Workerless, stream_template

app = QuartTrio(__name__)
workerless = Workerless(app, store="memory://", ttl=60, deadline=10)

gates: defaultdict[str, trio.Event] = defaultdict(trio.Event)
calls: Counter[str] = Counter()
fixed: set[str] = set()


def _context(run: str) -> dict[str, object]:
    names = [name for name in request.args.get("names", "a,b").split(",") if name]
    return {"run": run, "names": names, "extra": request.args.get("extra", "")}


@app.get("/page/<run>")
async def page(run: str) -> Response:
    deadline = request.args.get("deadline", type=float)
    return await stream_template("page_app.html", deadline=deadline, **_context(run))


@app.get("/fetched/<run>")
async def fetched(run: str) -> str:
    return await render_template("page_app.html", **_context(run))


@app.get("/plain")
async def plain() -> str:
    return "not a fragment"


@workerless.fragment("/part/<name>")
async def part(name: str) -> str:
    calls[name] += 1
    await gates[name].wait()
    if name.endswith("-failing") and name not in fixed:
        raise RuntimeError(f"{name} fails on purpose")
    return f'<p class="part" data-name="{name}">done {name}</p>'


@app.post("/release/<name>")
async def release(name: str) -> str:
    gates[name].set()
    return "released"


@app.post("/fix/<name>")
async def fix(name: str) -> str:
    fixed.add(name)
    return "fixed"


@app.get("/calls/<name>")
async def count(name: str) -> dict[str, int]:
    return {"calls": calls[name]}
