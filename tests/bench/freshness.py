"""Scenario 7, freshness: what stale-while-revalidate, early refresh and ETags save, each row
a comparison in one run.

- Returning visitor after expiry: the time to a fragment whose ttl has just ended, on a route
  with a stale window and on one without, beside a plain hit.
- Hot key at expiry under load: client loops hammer one key whose ttl ends mid-run; requests
  that waited for a computation and computations started, with early refresh on and off (two
  sets of servers started with ``WORKERLESS_EARLY_REFRESH`` 1 and 0).
- Bytes moved on a warm reload: a second round of fragment requests with ``If-None-Match``
  against one without.

The returning-visitor and reload rows run on the servers with early refresh off, so an early
refresh cannot renew an entry the row wants expired.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .procs import Answer, AppServer, app_servers, run_client
from .report import Row, Rows, ms, summary, times
from .scenarios import Outcome, Sizes

__all__ = ["freshness"]

FRESH_TTL = 1.0  # the ttl of the bench app's /fresh/stale and /fresh/plain routes
VISIT_COMPUTE = 0.5  # seconds a returning visitor's fragment takes to compute
HOT_COMPUTE = 0.3  # seconds the hot key takes to compute
STALE_GOAL = 2.0  # a stale answer within this many times a hit's time
PAST_TTL = 0.2  # seconds past the ttl the returning visitor comes back


def freshness(store: str, store_url: str, sizes: Sizes, nonce: str, log_dir: Path) -> Outcome:
    """The three freshness rows on ``store``: two servers per variant on Redis, else one.

    A row that raises is reported as failed (its message goes to ``result["failures"]``)
    and the other rows still run.
    """
    count = 2 if store == "redis" else 1
    rows = Rows("7", store, "freshness")

    off_env = {"WORKERLESS_EARLY_REFRESH": "0"}
    on_env = {"WORKERLESS_EARLY_REFRESH": "1"}
    with (
        app_servers(count, store_url, log_dir, env=off_env) as off,
        app_servers(count, store_url, log_dir, env=on_env) as on,
    ):
        tag = f"{nonce}-{store}"
        rows.run("returning visitor", lambda: returning_visitor(off[0], store, sizes, tag))
        rows.run("hot key", lambda: hot_key(off, on, store, sizes, tag))
        rows.run("warm reload", lambda: warm_reload(off[0], store, sizes, tag))
    return rows.outcome()


def _mean(answers: Sequence[Answer]) -> float:
    return statistics.fmean(a.seconds for a in answers)


def _count(answers: Sequence[Answer], part: str) -> int:
    """How many answers have ``part`` in their Cache-Status."""
    return sum(part in a.headers.get("cache-status", "") for a in answers)


def returning_visitor(
    server: AppServer, store: str, sizes: Sizes, tag: str
) -> tuple[dict[str, Any], Row]:
    """Warm fragments, come back just after their ttl: with ``stale``, without, and a hit."""
    n = sizes.fresh_visits
    stale_targets = [f"/fresh/stale/{tag}-visit-s{i}?t={VISIT_COMPUTE}" for i in range(n)]
    plain_targets = [f"/fresh/plain/{tag}-visit-p{i}?t={VISIT_COMPUTE}" for i in range(n)]
    with ThreadPoolExecutor(2 * n) as pool:
        warm = list(pool.map(server.fetch, stale_targets + plain_targets))
    warmed = time.monotonic()
    if any(a.status != 200 for a in warm):
        raise RuntimeError(f"warming answered {sorted({a.status for a in warm})}")
    hits = [server.fetch(t) for t in stale_targets]
    time.sleep(max(0.0, warmed + FRESH_TTL + PAST_TTL - time.monotonic()))
    stale = [server.fetch(t) for t in stale_targets]
    plain = [server.fetch(t) for t in plain_targets]
    hit_s, stale_s, plain_s = _mean(hits), _mean(stale), _mean(plain)
    ratio = stale_s / hit_s
    figures = {
        "visits": n,
        "compute_seconds": VISIT_COMPUTE,
        "ttl": FRESH_TTL,
        "hit": summary([a.seconds for a in hits]) | {"hits": _count(hits, "; hit")},
        "stale": summary([a.seconds for a in stale]) | {"stale": _count(stale, "fwd=stale")},
        "no_stale": summary([a.seconds for a in plain]) | {"misses": _count(plain, "fwd=miss")},
        "stale_over_hit": ratio,
        "goal_stale_over_hit": STALE_GOAL,
    }
    row = Row(
        "7",
        "returning visitor after expiry",
        store,
        f"`stale=60`: {ms(stale_s)} (mean of {n})",
        f"no stale: {ms(plain_s)}; a hit: {ms(hit_s)}",
        f"stale = {times(ratio)} a hit's time (goal ≤ {STALE_GOAL:g}×); "
        f"no stale waits the {ms(VISIT_COMPUTE)} computation",
    )
    return figures, row


def _hammer(servers: Sequence[AppServer], sizes: Sizes, key: str) -> dict[str, Any]:
    target = f"/fresh/plain/{key}?t={HOT_COMPUTE}"
    warm = servers[0].fetch(target)
    if warm.status != 200:
        raise RuntimeError(f"warming {target} answered {warm.status}")
    job = {
        "kind": "hammer",
        "ports": [s.port for s in servers],
        "n": sizes.hot_clients,
        "target": target,
        "seconds": sizes.hot_seconds,
    }
    begun = time.monotonic()
    figures = run_client(job, timeout=sizes.hot_seconds + 60)
    # From the warm computation's end to the last answer: how many ttls the key lived through.
    figures["ttl_periods"] = (time.monotonic() - begun + warm.seconds - HOT_COMPUTE) / FRESH_TTL
    figures["computations"] = sum(s.computations(key) for s in servers) - 1
    figures["waits"] = summary(figures["waits"])
    return figures


def hot_key(
    off: Sequence[AppServer], on: Sequence[AppServer], store: str, sizes: Sizes, tag: str
) -> tuple[dict[str, Any], Row]:
    """One key under ``hot_clients`` loops for ``hot_seconds``, early refresh on vs off."""
    figures: dict[str, Any] = {
        "clients": sizes.hot_clients,
        "seconds": sizes.hot_seconds,
        "ttl": FRESH_TTL,
        "compute_seconds": HOT_COMPUTE,
        "servers": len(on),
    }
    figures["early_refresh_off"] = _hammer(off, sizes, f"{tag}-hot-off")
    figures["early_refresh_on"] = _hammer(on, sizes, f"{tag}-hot-on")
    yes, no = figures["early_refresh_on"], figures["early_refresh_off"]
    fleet = f"{len(on)} servers" if len(on) > 1 else "1 server"
    row = Row(
        "7",
        "hot key at expiry under load",
        store,
        f"early refresh: {yes['waited']} of {yes['requests']} requests waited; "
        f"{yes['computations']} computations",
        f"off: {no['waited']} of {no['requests']} waited (max {ms(no['waits']['max'])}); "
        f"{no['computations']} computations",
        f"{sizes.hot_clients} loops, {fleet}, {sizes.hot_seconds:g} s ≈ "
        f"{yes['ttl_periods']:.1f} ttls of {FRESH_TTL:g} s (goals: 0 waits, ~1 computation "
        "per ttl)",
    )
    return figures, row


def warm_reload(
    server: AppServer, store: str, sizes: Sizes, tag: str
) -> tuple[dict[str, Any], Row]:
    """Fetch K fragments, then again with and without each first answer's ETag."""
    k = sizes.reload_fragments
    targets = [f"/fresh/page/{tag}-page-{i}" for i in range(k)]
    figures = run_client({"kind": "reload", "port": server.port, "targets": targets}, timeout=60)
    figures["fragments"] = k
    etag, plain = figures["etag"], figures["plain"]
    ratio = etag["bytes"] / plain["bytes"] if plain["bytes"] else None
    row = Row(
        "7",
        "bytes moved on a warm reload",
        store,
        f"`If-None-Match`: {etag['bytes']:,} B, body {etag['body_bytes']:,} B "
        f"({etag['statuses'].get('304', 0)} × 304)",
        f"without: {plain['bytes']:,} B, body {plain['body_bytes']:,} B",
        f"{k} fragments; {times(ratio)} the bytes (goal: no body bytes)",
    )
    return figures, row
