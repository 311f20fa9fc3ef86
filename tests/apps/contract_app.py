"""A fragment app whose computations the tests can count, gate, fail and time out.

Used in-process (Quart's test client or hypercorn.trio.serve in the test's own trio run) and
as ``contract_app:app`` in a hypercorn subprocess (settings from WORKERLESS_* variables).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import trio
from quart import abort, jsonify, make_response, request
from quart_trio import QuartTrio

from workerless import Workerless


class Probe:
    """What the test can see and steer: computation counts, gates, a failure switch."""

    def __init__(self) -> None:
        self.computations: Counter[str] = Counter()
        self.gates: dict[str, trio.Event] = {}
        self.failing = True
        self.finished: list[str] = []

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())


def make_app(
    environ: Mapping[str, str] | None = None, **settings: Any
) -> tuple[QuartTrio, Workerless, Probe]:
    app = QuartTrio(__name__)
    workerless = Workerless(app, environ=environ if environ is not None else {}, **settings)
    probe = Probe()
    marker_dir = os.environ.get("CONTRACT_MARKER_DIR")

    @workerless.fragment("/quick/<name>")
    async def quick(name: str) -> str:
        probe.computations[f"quick/{name}"] += 1
        await trio.sleep(float(request.args.get("t", "0")))
        return f"quick {name} #{probe.computations[f'quick/{name}']}"

    @workerless.fragment("/gated/<name>", deadline=1.0)
    async def gated(name: str) -> str:
        probe.computations[f"gated/{name}"] += 1
        await probe.gate(name).wait()
        return f"gated {name} opened"

    @workerless.fragment("/sleep/<name>")
    async def sleep(name: str) -> str:
        probe.computations[f"sleep/{name}"] += 1
        if marker_dir:
            await trio.Path(marker_dir, f"{name}.started").write_text("started")
        await trio.sleep(float(request.args.get("t", "1")))
        probe.finished.append(name)
        if marker_dir:
            await trio.Path(marker_dir, name).write_text("finished")
        return f"slept {name}"

    @workerless.fragment("/boom")
    async def boom() -> str:
        probe.computations["boom"] += 1
        await trio.sleep(float(request.args.get("t", "0")))
        if probe.failing:
            raise RuntimeError("upstream exploded")
        return "boom fixed"

    @workerless.fragment("/runaway", hard_limit=0.5)
    async def runaway() -> str:
        probe.computations["runaway"] += 1
        await trio.sleep_forever()
        return "unreachable"  # pragma: no cover

    @workerless.fragment("/status/<int:code>")
    async def status(code: int) -> Any:
        probe.computations[f"status/{code}"] += 1
        if code == 404:
            abort(404)
        return f"status {code}", code

    @workerless.fragment("/echo/<name>")
    async def echo(name: str) -> Any:
        probe.computations["echo"] += 1
        return jsonify(
            name=name,
            args=list(request.args.items(multi=True)),
            header=request.headers.get("X-Probe"),
            method=request.method,
        )

    @workerless.fragment("/per-user", key=lambda req: f"/per-user/{req.args.get('user', '')}")
    async def per_user() -> str:
        probe.computations["per-user"] += 1
        return f"user {request.args.get('user')} #{probe.computations['per-user']}"

    @workerless.fragment("/cookie")
    async def cookie() -> Any:
        probe.computations["cookie"] += 1
        response = await make_response("with cookie")
        response.set_cookie("session", "secret-of-the-first-visitor")
        response.headers["X-Kept"] = "yes"
        return response

    @workerless.fragment("/cache-control/<name>", deadline=5.0)
    async def cache_control(name: str) -> Any:
        """Answers with ``Cache-Control: <?cc=...>`` once the gate ``name`` opens."""
        probe.computations[f"cache-control/{name}"] += 1
        count = probe.computations[f"cache-control/{name}"]
        await probe.gate(name).wait()
        return f"{name} #{count}", 200, {"Cache-Control": request.args.get("cc", "")}

    @workerless.fragment("/vary/<name>")
    async def vary(name: str) -> Any:
        """Answers in the request's Accept-Language, varying on ``?on=`` (default that header)."""
        probe.computations[f"vary/{name}"] += 1
        language = request.headers.get("Accept-Language", "none")
        return f"{name} in {language}", 200, {"Vary": request.args.get("on", "Accept-Language")}

    @app.post("/admin/invalidate")
    async def invalidate() -> Any:
        url = request.args["url"]
        return jsonify(removed=await workerless.invalidate(url))

    return app, workerless, probe


if "CONTRACT_MARKER_DIR" in os.environ:  # run as a server process by the tests
    logging.basicConfig(level=logging.INFO)
app, workerless, probe = make_app(environ=os.environ)
