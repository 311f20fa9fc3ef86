"""Scenario 8: a hit through WorkerlessMiddleware against the same app's bare route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .procs import app_servers
from .report import Row, Rows, times
from .scenarios import Outcome, Sizes, wrk_cell, wrk_pair

__all__ = ["MIDDLEWARE_GOAL", "middleware_hits"]

MIDDLEWARE_GOAL = 0.95  # the goal: hit throughput / the bare route's


def middleware_hits(
    store: str, url: str, sizes: Sizes, log_dir: Path, redis_pid: int | None = None
) -> Outcome:
    """wrk on a page cached by the middleware and on a bare route of the same Starlette app
    answering the same bytes, in alternating rounds (as scenario 1)."""
    rows = Rows("8", store, "middleware")
    rows.run("hit", lambda: _hits(store, url, sizes, log_dir, redis_pid))
    return rows.outcome()


def _hits(
    store: str, url: str, sizes: Sizes, log_dir: Path, redis_pid: int | None
) -> tuple[dict[str, Any], Row]:
    with app_servers(1, url, log_dir, app="bench.middleware_app:app") as (server,):
        _, _, bare = server.request("/bare")
        server.request("/page")
        _, headers, body = server.request("/page")
        if body != bare or not headers.get("cache-status", "").startswith("workerless; hit"):
            raise RuntimeError(f"/page is not a hit of the same bytes: {headers}")
        figures, ratio, runs = wrk_pair(server, "page", "bare", sizes, redis_pid)
        computations = server.computations("")
    result = {
        "goal_rate_ratio": MIDDLEWARE_GOAL,
        "connections": sizes.wrk_connections,
        "rounds": sizes.wrk_rounds,
        "bytes": len(bare),
        "computations": computations,
        "page": figures["page"],
        "bare": figures["bare"],
        "ratio": ratio,
        "runs": runs,
    }
    row = Row(
        "8",
        f"Middleware hit: a Starlette page ({len(bare)} B) cached by WorkerlessMiddleware, "
        f"wrk with {sizes.wrk_connections} connections, "
        + (f"{sizes.wrk_rounds} rounds taking turns" if sizes.wrk_rounds > 1 else "1 round"),
        store,
        wrk_cell(figures["page"]),
        "the same app's bare route, same bytes: " + wrk_cell(figures["bare"]),
        f"throughput {times(ratio['rate'])} the bare route's (goal ≥ {MIDDLEWARE_GOAL:.2f}×); "
        f"{times(ratio['cpu_per_request'])} the CPU per request; "
        f"p50 {times(ratio['p50'])}, p99 {times(ratio['p99'])}",
    )
    return result, row
