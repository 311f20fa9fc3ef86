"""Fragment routes as htmx 2 and Turbo 8 pages use them, with pages built from the README.

``/htmx?run=X`` and ``/turbo?run=X`` are the README's "htmx" and "Turbo" snippets with their
one fragment element repeated for a fast, a past-deadline and a failing fragment (``run``
makes fresh cache keys per test).  The vendored htmx and Turbo files are served from
``/static/``, as the snippets expect.  Run in-process, or as ``apps.clients_app:app``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from quart import abort, request, send_file
from quart_trio import QuartTrio

from workerless import Workerless

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "tests" / "vendor"
SCRIPTS = {
    "htmx.min.js": VENDOR / "htmx" / "htmx.min.js",
    "turbo.es2017-umd.js": VENDOR / "turbo" / "turbo.es2017-umd.js",
}
SLOW_DEADLINE = 0.5
SLOW_SECONDS = 2.0
FRAGMENTS = ("fast", "slow", "failing")
# The README's one fragment element, which each test page repeats once per fragment.
README_FRAGMENT_URL = "/fragment/a"


def readme_snippet(section: str) -> str:
    """The first ```html block of the README's ``### <section>``."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"\n### {section}\n.*?```html\n(.*?)```", readme, re.S)
    if match is None:
        raise LookupError(f"README.md has no html snippet under '### {section}'")
    return match.group(1)


def page_from_snippet(snippet: str, element: str, urls: list[str]) -> str:
    """The snippet with its fragment ``element`` (a regex) repeated, once per URL."""
    match = re.search(element, snippet, re.S)
    if match is None:
        raise LookupError(f"no {element!r} in the README snippet")
    one = match.group(0)
    assert README_FRAGMENT_URL in one, f"the snippet's fragment is not {README_FRAGMENT_URL}"
    many = "\n".join(
        one.replace(README_FRAGMENT_URL, url).replace("fragment-a", f"fragment-{i}")
        for i, url in enumerate(urls)
    )
    # A favicon of its own, or Chromium asks for /favicon.ico and logs the 404 as an error.
    head = '<!doctype html>\n<title>workerless</title>\n<link rel="icon" href="data:,">\n'
    return head + snippet.replace(one, many)


def make_app() -> tuple[QuartTrio, Workerless, Counter[str]]:
    app = QuartTrio(__name__)
    workerless = Workerless(app, environ={}, store="memory://")
    computations: Counter[str] = Counter()

    @app.get("/static/<name>")
    async def vendored(name: str) -> Any:
        if name not in SCRIPTS:
            abort(404)
        return await send_file(SCRIPTS[name], mimetype="text/javascript")

    def urls() -> list[str]:
        run = request.args.get("run", "")
        return [f"/fragment/{name}?run={run}" for name in FRAGMENTS]

    @app.get("/htmx")
    async def htmx_page() -> str:
        return page_from_snippet(readme_snippet("htmx"), r"<div hx-get=.*?</div>", urls())

    @app.get("/turbo")
    async def turbo_page() -> str:
        return page_from_snippet(
            readme_snippet("Turbo"), r"<turbo-frame id=.*?</turbo-frame>", urls()
        )

    @workerless.fragment("/fragment/fast")
    async def fast() -> str:
        computations["fast"] += 1
        return '<p class="content">fast content</p>'

    @workerless.fragment("/fragment/slow", deadline=SLOW_DEADLINE)
    async def slow() -> str:
        computations["slow"] += 1
        await trio.sleep(float(request.args.get("t", SLOW_SECONDS)))
        return '<p class="content">slow content</p>'

    @workerless.fragment("/fragment/failing")
    async def failing() -> str:
        key = f"failing?{request.query_string.decode()}"
        computations[key] += 1
        if computations[key] == 1:  # the first computation per key fails, the next succeeds
            raise RuntimeError("upstream exploded")
        return '<p class="content">failing content, after a retry</p>'

    @workerless.fragment("/fragment/framed")
    async def framed() -> str:
        return '<turbo-frame id="framed"><p>wrapped by the view</p></turbo-frame>'

    @workerless.fragment("/fragment/json")
    async def json() -> dict[str, str]:
        return {"kind": "json"}

    @workerless.fragment("/fragment/missing")
    async def missing() -> str:
        abort(404)

    return app, workerless, computations


app, workerless, computations = make_app()
