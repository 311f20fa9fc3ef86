"""The contract app's routes as a plain Starlette app behind WorkerlessMiddleware.

The same paths, bodies and `Probe` as ``contract_app`` (fragment routes), so the HTTP contract
tests run unchanged against both.  Used in-process and as ``contract_asgi:app`` in a hypercorn
subprocess (settings from WORKERLESS_* variables).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import trio
from apps.contract_app import Probe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from workerless import CachedRoute, WorkerlessMiddleware


def per_user_key(scope: Mapping[str, Any]) -> str:
    """The /per-user route's key: only its ``user`` parameter counts."""
    user = parse_qs(scope["query_string"].decode()).get("user", [""])[0]
    return f"/per-user/{user}"


ROUTES = [
    "/quick/*",
    CachedRoute("/gated/*", deadline=1.0),
    "/sleep/*",
    "/boom",
    CachedRoute("/runaway", hard_limit=0.5),
    "/status/*",
    "/echo/*",
    CachedRoute("/per-user", key=per_user_key),
    "/cookie",
    CachedRoute("/cache-control/*", deadline=5.0),
    "/vary/*",
]


def make_app(
    environ: Mapping[str, str] | None = None, **settings: Any
) -> tuple[WorkerlessMiddleware, WorkerlessMiddleware, Probe]:
    """The wrapped app (twice: it is the middleware itself) and its probe."""
    probe = Probe()
    marker_dir = os.environ.get("CONTRACT_MARKER_DIR")

    async def quick(request: Request) -> Response:
        name = request.path_params["name"]
        probe.computations[f"quick/{name}"] += 1
        await trio.sleep(float(request.query_params.get("t", "0")))
        return HTMLResponse(f"quick {name} #{probe.computations[f'quick/{name}']}")

    async def gated(request: Request) -> Response:
        name = request.path_params["name"]
        probe.computations[f"gated/{name}"] += 1
        await probe.gate(name).wait()
        return HTMLResponse(f"gated {name} opened")

    async def sleep(request: Request) -> Response:
        name = request.path_params["name"]
        probe.computations[f"sleep/{name}"] += 1
        if marker_dir:
            await trio.Path(marker_dir, f"{name}.started").write_text("started")
        await trio.sleep(float(request.query_params.get("t", "1")))
        probe.finished.append(name)
        if marker_dir:
            await trio.Path(marker_dir, name).write_text("finished")
        return HTMLResponse(f"slept {name}")

    async def boom(request: Request) -> Response:
        probe.computations["boom"] += 1
        await trio.sleep(float(request.query_params.get("t", "0")))
        if probe.failing:
            raise RuntimeError("upstream exploded")
        return HTMLResponse("boom fixed")

    async def runaway(request: Request) -> Response:
        probe.computations["runaway"] += 1
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def status(request: Request) -> Response:
        code = request.path_params["code"]
        probe.computations[f"status/{code}"] += 1
        return HTMLResponse(f"status {code}", status_code=code)

    async def echo(request: Request) -> Response:
        probe.computations["echo"] += 1
        return JSONResponse(
            {
                "name": request.path_params["name"],
                "args": list(request.query_params.multi_items()),
                "header": request.headers.get("X-Probe"),
                "method": request.method,
            }
        )

    async def per_user(request: Request) -> Response:
        probe.computations["per-user"] += 1
        user = request.query_params.get("user")
        return HTMLResponse(f"user {user} #{probe.computations['per-user']}")

    async def cookie(request: Request) -> Response:
        probe.computations["cookie"] += 1
        response = HTMLResponse("with cookie", headers={"X-Kept": "yes"})
        response.set_cookie("session", "secret-of-the-first-visitor")
        return response

    async def cache_control(request: Request) -> Response:
        name = request.path_params["name"]
        probe.computations[f"cache-control/{name}"] += 1
        count = probe.computations[f"cache-control/{name}"]
        await probe.gate(name).wait()
        cc = request.query_params.get("cc", "")
        return HTMLResponse(f"{name} #{count}", headers={"Cache-Control": cc})

    async def vary(request: Request) -> Response:
        name = request.path_params["name"]
        probe.computations[f"vary/{name}"] += 1
        language = request.headers.get("Accept-Language", "none")
        on = request.query_params.get("on", "Accept-Language")
        return HTMLResponse(f"{name} in {language}", headers={"Vary": on})

    async def invalidate(request: Request) -> Response:
        removed = await middleware.invalidate(request.query_params["url"])
        return JSONResponse({"removed": removed})

    async def not_cached(request: Request) -> Response:
        probe.computations["not-cached"] += 1
        return PlainTextResponse(f"not cached #{probe.computations['not-cached']}")

    starlette = Starlette(
        routes=[
            Route("/quick/{name}", quick),
            Route("/gated/{name}", gated),
            Route("/sleep/{name}", sleep),
            Route("/boom", boom),
            Route("/runaway", runaway),
            Route("/status/{code:int}", status),
            Route("/echo/{name}", echo),
            Route("/per-user", per_user),
            Route("/cookie", cookie),
            Route("/cache-control/{name}", cache_control),
            Route("/vary/{name}", vary),
            Route("/admin/invalidate", invalidate, methods=["POST"]),
            Route("/not-cached", not_cached),
        ]
    )
    environ = environ if environ is not None else {}
    middleware = WorkerlessMiddleware(starlette, routes=ROUTES, environ=environ, **settings)
    return middleware, middleware, probe


if "CONTRACT_MARKER_DIR" in os.environ:  # run as a server process by the tests
    logging.basicConfig(level=logging.INFO)
app, middleware, probe = make_app(environ=os.environ)
