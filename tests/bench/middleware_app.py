"""Scenario 8's server: a Starlette app behind WorkerlessMiddleware, with a bare route.

Served as ``bench.middleware_app:app`` by ``hypercorn --worker-class trio``; settings (the
store above all) from the ``WORKERLESS_*`` variables.  ``/page`` is cached by the middleware,
``/bare`` answers the same bytes straight from the same app (it passes through).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bench.app import PAYLOAD
from workerless import WorkerlessMiddleware

__all__ = ["app"]

computations = 0


async def bare(request: Request) -> Response:
    return HTMLResponse(PAYLOAD)


async def page(request: Request) -> Response:
    global computations
    computations += 1
    return HTMLResponse(PAYLOAD)


async def stats(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid(), "computations": computations, "held": 0})


routes = [Route("/bare", bare), Route("/page", page), Route("/bench/stats", stats)]
app = WorkerlessMiddleware(Starlette(routes=routes), routes=["/page"])
