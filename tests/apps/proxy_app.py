"""Fragments of every outcome, served by hypercorn behind a real nginx (tests/test_proxy.py).

Run as ``apps.proxy_app:app`` (``--root-path /app`` to mount it under a sub-path).  Settings
come from the ``WORKERLESS_*`` variables; ``/admin/stop`` stops the fragment service the way
a shutdown does, so that fragment routes answer their own 503.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import jsonify, request, url_for
from quart_trio import QuartTrio

from workerless import Workerless

app = QuartTrio(__name__)
workerless = Workerless(app)


@workerless.fragment("/fast/<name>")
async def fast(name: str) -> str:
    return f"<p>fast {name}</p>"


@workerless.fragment("/slow/<name>", deadline=0.5)
async def slow(name: str) -> str:
    await trio.sleep(float(request.args.get("t", "1.5")))
    return f"<p>slow {name}</p>"


@workerless.fragment("/patient", deadline=3)
async def patient() -> str:
    await trio.sleep(5)
    return "<p>patient</p>"


@workerless.fragment("/boom")
async def boom() -> str:
    raise RuntimeError("upstream exploded")


@workerless.fragment("/runaway", hard_limit=0.3)
async def runaway() -> str:
    await trio.sleep_forever()
    return "unreachable"  # pragma: no cover


@workerless.fragment("/<path:rest>", deadline=0.2)
async def anything(rest: str) -> str:
    await trio.sleep(1)
    return f"<p>anything {rest} {request.path}</p>"


@app.post("/admin/stop")
async def stop() -> Any:
    workerless._stop.set()
    await workerless._stopped.wait()
    return "stopped"


@app.get("/")
async def index() -> str:
    return url_for("fast", name="linked")


@app.post("/admin/invalidate")
async def invalidate() -> Any:
    return jsonify(removed=await workerless.invalidate(request.args["url"]))
