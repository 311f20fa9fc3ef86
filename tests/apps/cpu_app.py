"""A CPU-bound fragment written the README's way (in a thread), next to a bare route.

Served by tests/test_mistakes.py as ``apps.cpu_app:app`` in a hypercorn process; ``/busy``
tells whether the busy work is running.  The README shows ``report`` as written here.
"""

from __future__ import annotations

import threading
import time

import trio
from quart_trio import QuartTrio

from workerless import Workerless

app = QuartTrio(__name__)
workerless = Workerless(app, deadline=30.0)
running = threading.Event()


def crunch(seconds: float = 2.0) -> int:
    """About ``seconds`` of pure-Python busy work: CPU-bound, holding the GIL."""
    running.set()
    try:
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            count += 1
        return count
    finally:
        running.clear()


@workerless.fragment("/fragment/report")
async def report() -> str:
    # CPU-bound work goes to a thread, so the event loop keeps serving other requests.
    count = await trio.to_thread.run_sync(crunch)
    return f"<p>{count} iterations</p>"


@app.get("/ping")
async def ping() -> str:
    return "pong"


@app.get("/busy")
async def busy() -> str:
    return "yes" if running.is_set() else "no"
