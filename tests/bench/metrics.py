"""Scenario 9: hit throughput with the metrics and statistics endpoints on, against off.

Two bench servers on one store, one started with ``WORKERLESS_METRICS_PATH`` and
``WORKERLESS_STATS_PATH``, one without; wrk on the same cached fragment of each, in turns
(the order alternates each round), with the server's CPU time per request.  The "on" server
is scraped after every round, as Prometheus would be, and its hit counter must have counted
every request wrk made.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .procs import AppServer, app_servers
from .report import Row, times
from .scenarios import Outcome, Sizes, take_turns, wrk_cell

__all__ = ["GOAL", "metrics_overhead"]

GOAL = 0.97  # hit throughput with metrics on, as a fraction of off
ON_ENV = {"WORKERLESS_METRICS_PATH": "/metrics", "WORKERLESS_STATS_PATH": "/workerless/stats"}


def metrics_overhead(store: str, store_url: str, sizes: Sizes, log_dir: Path) -> Outcome:
    with (
        app_servers(1, store_url, log_dir, env=ON_ENV) as (on,),
        app_servers(1, store_url, log_dir) as (off,),
    ):
        servers = {"on": on, "off": off}
        for server in servers.values():
            server.request("/fragment")
            _, headers, _ = server.request("/fragment")
            if not headers.get("cache-status", "").startswith("workerless; hit"):
                raise RuntimeError(f"/fragment is not a hit: {headers}")
        targets = {"on": (on, "/fragment"), "off": (off, "/fragment")}
        scraped: list[float] = []  # the hit counter, before the rounds and after each
        runs, figures = take_turns(targets, sizes, scrape=lambda: scraped.append(_hits(on)))
        counted = int(scraped[-1] - scraped[0])
    paired = list(zip(runs["on"], runs["off"], strict=True))
    ratio = statistics.median(a["rate"] / b["rate"] for a, b in paired)
    cpu_ratio = figures["on"]["cpu_per_request"] / figures["off"]["cpu_per_request"]
    result = {
        "goal_rate_ratio": GOAL,
        "rounds": sizes.wrk_rounds,
        "on": figures["on"],
        "off": figures["off"],
        "rate_ratio": ratio,
        "cpu_ratio": cpu_ratio,
        # wrk counts completed requests only; cut ones may still reach the server.
        "hits_counted": counted,
        "runs": runs,
    }

    row = Row(
        "9",
        f"Hit throughput, metrics on vs off: a cached fragment, wrk with "
        f"{sizes.wrk_connections} connections, {sizes.wrk_rounds} round(s) taking turns, "
        "/metrics scraped after each",
        store,
        "metrics and statistics on: " + wrk_cell(figures["on"]),
        "off: " + wrk_cell(figures["off"]),
        f"throughput {times(ratio)} (goal ≥ {GOAL:.2f}×); {times(cpu_ratio)} the CPU per "
        f"request; {counted:,} hits counted, {figures['on']['requests']:,} completed by wrk",
    )
    return result, [row]


def _hits(server: AppServer) -> float:
    """The server's ``workerless_hits_total`` of the /fragment route, as Prometheus reads it."""
    _, _, body = server.request("/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "workerless_hits_total" and sample.labels["route"] == "/fragment":
                return sample.value
    raise RuntimeError("no workerless_hits_total{route=/fragment} in /metrics")
