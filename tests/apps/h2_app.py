"""A page of twelve slow fragments, for the HTTP/2 browser test (tests/browser/test_http2.py).

Run as ``apps.h2_app:app``; ``H2_FRAGMENT_SECONDS`` sets how long each fragment takes.
"""

from __future__ import annotations

import os

import trio
from quart import render_template_string
from quart_trio import QuartTrio

from workerless import Workerless

FRAGMENTS = 12
SECONDS = float(os.environ.get("H2_FRAGMENT_SECONDS", "2"))

app = QuartTrio(__name__)
workerless = Workerless(app)


@app.get("/")
async def index() -> str:
    return await render_template_string(
        '{% extends "workerless/layout.html" %}'
        '{% import "workerless/macros.html" as wl %}'
        "{% block body %}{% for n in range(count) %}"
        "{{ wl.fragment(url_for('slow', n=n)) }}"
        "{% endfor %}{% endblock %}",
        count=FRAGMENTS,
    )


@workerless.fragment("/slow/<int:n>", deadline=SECONDS + 10)
async def slow(n: int) -> str:
    await trio.sleep(SECONDS)
    return f"<p>fragment {n}</p>"
