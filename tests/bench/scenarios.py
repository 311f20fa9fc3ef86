"""Scenarios 1-5: each measures workerless and the alternative in the same run.

Each returns its figures as a dict (for the JSON) and its rows of the table.  The load comes
from other processes: ``wrk``, or the trio client in ``bench.client``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import wrk
from .procs import AppServer, app_servers, process_cpu, run_client, start_client
from .report import Row, log, ms, summary, times

__all__ = [
    "FULL",
    "QUICK",
    "Sizes",
    "held_connections",
    "hit_overhead",
    "hold",
    "stampede",
    "take_turns",
    "time_to_fragment",
    "wakeup",
    "wrk_cell",
    "wrk_pair",
]

Outcome = tuple[dict[str, Any], list[Row]]

# The goals, each a ratio within one run: a hit's throughput against a bare route's,
# and how much more a held request costs than a bare held one.
HIT_GOAL = {"memory": 0.95, "redis": 0.90}
HELD_GOAL_KIB = 4.0
WAKEUP_GOAL = 0.010  # seconds, mean, for 20 waiters in another process


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each scenario is: the full run, or the quick one CI runs."""

    wrk_seconds: float
    wrk_rounds: int
    wrk_connections: int
    stampede_requests: int
    stampede_seconds: float
    fragments: int
    fragment_max_seconds: float
    fragment_spread: float
    poll_interval: float
    held: int
    wakeups: int
    wakeup_waiters: int
    wakeup_seconds: float
    wakeup_spacing: float
    wakeup_lag: float
    fault_stampede: int
    fault_held: int
    redis_kill_lease: float
    cap_requests: int
    cap_seconds: float
    fresh_visits: int
    hot_clients: int
    hot_seconds: float
    reload_fragments: int


FULL = Sizes(
    wrk_seconds=3,
    wrk_rounds=6,
    wrk_connections=50,
    stampede_requests=500,
    stampede_seconds=1.0,
    fragments=100,
    fragment_max_seconds=3.0,
    fragment_spread=2.0,
    poll_interval=0.5,
    held=5000,
    wakeups=50,
    wakeup_waiters=20,
    wakeup_seconds=0.5,
    wakeup_spacing=0.15,
    wakeup_lag=0.1,
    fault_stampede=1000,
    fault_held=10000,
    redis_kill_lease=15.0,
    cap_requests=500,
    cap_seconds=5.0,
    fresh_visits=8,
    hot_clients=50,
    hot_seconds=4.0,
    reload_fragments=50,
)
QUICK = Sizes(
    wrk_seconds=1,
    wrk_rounds=1,
    wrk_connections=20,
    stampede_requests=100,
    stampede_seconds=0.5,
    fragments=10,
    fragment_max_seconds=1.0,
    fragment_spread=0.5,
    poll_interval=0.5,
    held=300,
    wakeups=8,
    wakeup_waiters=20,
    wakeup_seconds=0.3,
    wakeup_spacing=0.15,
    wakeup_lag=0.1,
    fault_stampede=300,
    fault_held=500,
    redis_kill_lease=6.0,
    cap_requests=200,
    cap_seconds=3.0,
    fresh_visits=3,
    hot_clients=20,
    hot_seconds=2.0,
    reload_fragments=10,
)


# -- 1. hit overhead ---------------------------------------------------------------------


def hit_overhead(
    server: AppServer, store: str, sizes: Sizes, redis_pid: int | None = None
) -> Outcome:
    """wrk on a cached fragment and on a bare route answering the same bytes, in turns.

    Throughput and latency swing with whatever else runs on the machine, so the rounds are
    short and alternate, ratios are taken within a round, and the server's CPU time per
    request (which other processes barely disturb) is measured too.
    """
    _, _, bare = server.request("/bare")
    server.request("/fragment")
    _, headers, body = server.request("/fragment")
    if body != bare or not headers.get("cache-status", "").startswith("workerless; hit"):
        raise RuntimeError(f"/fragment is not a hit of the same bytes: {headers}")
    figures, ratio, runs = wrk_pair(server, "fragment", "bare", sizes, redis_pid)
    fragment, plain = figures["fragment"], figures["bare"]
    result = {
        "goal_rate_ratio": HIT_GOAL[store],
        "connections": sizes.wrk_connections,
        "seconds": sizes.wrk_seconds,
        "rounds": sizes.wrk_rounds,
        "bytes": len(bare),
        "fragment": fragment,
        "bare": plain,
        "ratio": ratio,
        "runs": runs,
    }

    row = Row(
        "1",
        f"Hit overhead: a cached fragment ({len(bare)} B), wrk with "
        f"{sizes.wrk_connections} connections, "
        + (f"{sizes.wrk_rounds} rounds taking turns" if sizes.wrk_rounds > 1 else "1 round"),
        store,
        wrk_cell(fragment),
        "bare route, same bytes: " + wrk_cell(plain),
        f"throughput {times(ratio['rate'])} the bare route's (goal ≥ "
        f"{HIT_GOAL[store]:.2f}×); {times(ratio['cpu_per_request'])} the CPU per request; "
        f"p50 {times(ratio['p50'])}, p99 {times(ratio['p99'])}",
    )
    return result, [row]


def wrk_pair(
    server: AppServer, route: str, baseline: str, sizes: Sizes, redis_pid: int | None
) -> tuple[dict[str, dict[str, Any]], dict[str, float], dict[str, list[dict[str, Any]]]]:
    """wrk on ``route`` and on ``baseline`` (paths without their ``/``) by `take_turns`.

    Returns each route's figures, the ratios route/baseline, and every run.
    """
    targets = {baseline: (server, f"/{baseline}"), route: (server, f"/{route}")}
    runs, figures = take_turns(targets, sizes, redis_pid)
    paired = list(zip(runs[route], runs[baseline], strict=True))
    ratio = {
        # Per-round ratios first: both routes of a round ran under the same conditions.
        name: statistics.median(f[name] / b[name] for f, b in paired)
        for name in ("rate", "p50", "p99")
    }
    ratio["cpu_per_request"] = (
        figures[route]["cpu_per_request"] / figures[baseline]["cpu_per_request"]
    )
    return figures, ratio, runs


def take_turns(
    targets: Mapping[str, tuple[AppServer, str]],
    sizes: Sizes,
    redis_pid: int | None = None,
    scrape: Callable[[], object] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """wrk on each target (a server and a path), in turns whose order alternates each round.

    Returns every run (with the server's and redis-server's CPU seconds) by target name, and
    per target the median rate and latencies, CPU per request, and errors.  ``scrape`` is
    called once the targets are warm and after each round.
    """
    names = tuple(targets)
    if sizes.wrk_rounds > 1:  # let every target warm up before anything counts
        for server, path in targets.values():
            wrk.run(f"{server.url}{path}", seconds=1, connections=sizes.wrk_connections)
    if scrape is not None:
        scrape()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(sizes.wrk_rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            server, path = targets[name]
            cpu, redis_cpu = process_cpu(server.pid), process_cpu(redis_pid)
            run = wrk.run(
                f"{server.url}{path}",
                seconds=sizes.wrk_seconds,
                connections=sizes.wrk_connections,
            ).as_dict()
            run["cpu"] = process_cpu(server.pid) - cpu
            run["redis_cpu"] = process_cpu(redis_pid) - redis_cpu
            runs[name].append(run)
        if scrape is not None:
            scrape()
    figures: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        requests = sum(r["requests"] for r in results)
        figures[name] = {
            "rate": statistics.median(r["rate"] for r in results),
            "p50": statistics.median(r["p50"] for r in results),
            "p99": statistics.median(r["p99"] for r in results),
            "cpu_per_request": sum(r["cpu"] for r in results) / requests,
            "redis_cpu_per_request": sum(r["redis_cpu"] for r in results) / requests,
            "requests": requests,
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in results),
        }
    return runs, figures


def wrk_cell(f: dict[str, Any]) -> str:
    """One target's figures from `take_turns`, as a table cell."""
    text = (
        f"{f['rate']:,.0f} req/s, p50 {ms(f['p50'])}, p99 {ms(f['p99'])}; "
        f"{ms(f['cpu_per_request'])} CPU/request"
    )
    if f["redis_cpu_per_request"] >= 0.00005:
        text += f" + {ms(f['redis_cpu_per_request'])} in redis-server"
    return text + (f"; {f['errors']} errors" if f["errors"] else "")


# -- 2. stampede -------------------------------------------------------------------------


def stampede(servers: Sequence[AppServer], store: str, sizes: Sizes, nonce: str) -> Outcome:
    """Concurrent requests for one cold key: workerless against cache-aside, 1 and 2 processes."""
    n, seconds = sizes.stampede_requests, sizes.stampede_seconds
    result: dict[str, Any] = {"requests": n, "seconds": seconds}
    rows = []
    for processes in (1, len(servers)):
        group = servers[:processes]
        figures: dict[str, dict[str, Any]] = {}
        for route, name in (("wl", "workerless"), ("aside", "cache-aside")):
            key = f"stampede-{nonce}-{route}-{processes}p"
            log(f"  stampede: {name}, {processes} process(es)")
            out = run_client(
                {
                    "kind": "stampede",
                    "ports": [s.port for s in group],
                    "n": n,
                    "target": f"/{route}/{key}?t={seconds}",
                },
                timeout=120,
            )
            ok = out["statuses"].get("200", 0)
            expected = None
            if route == "wl":
                # MemoryStore is per process: each process computes once. Redis: one in all.
                expected = 1 if store == "redis" else processes
            figures[name] = {
                "processes": processes,
                "computations": sum(s.computations(key) for s in group),
                "expected_computations": expected,
                "ok": ok,
                "errors": n - ok,
                "statuses": out["statuses"],
                "error_samples": out["errors"][:5],
                "latency": summary(out["latencies"]),
            }
            result[f"{name}-{processes}p"] = figures[name]
        ours, theirs = figures["workerless"], figures["cache-aside"]

        def cell(f: dict[str, Any]) -> str:
            plural = "" if f["computations"] == 1 else "s"
            return (
                f"{f['computations']} computation{plural}; p50 {ms(f['latency']['p50'])}, "
                f"p99 {ms(f['latency']['p99'])}; {f['errors']} errors"
            )

        rows.append(
            Row(
                "2",
                f"Stampede: {n} concurrent requests for one cold key, {seconds:g} s "
                f"computation, {processes} server process{'es' if processes > 1 else ''}",
                store,
                cell(ours),
                "cache-aside (dict, no single flight): " + cell(theirs),
                f"{times(theirs['computations'] / max(1, ours['computations']))} fewer "
                "computations",
            )
        )
    return result, rows


# -- 3. time to fragment -----------------------------------------------------------------


def time_to_fragment(server: AppServer, store: str, sizes: Sizes, nonce: str) -> Outcome:
    """How long after its computation ends a fragment reaches the client: held vs polling."""
    rng = random.Random(6)
    items = []
    for i in range(sizes.fragments):
        seconds = rng.uniform(0, sizes.fragment_max_seconds)
        at = rng.uniform(0, sizes.fragment_spread)
        for pattern, route in (("held", "wl"), ("poll", "worker")):
            target = f"/{route}/ttf-{nonce}-{route}-{i}?t={seconds:.3f}"
            items.append({"pattern": pattern, "target": target, "at": at})
    out = run_client(
        {"kind": "timeline", "port": server.port, "poll": sizes.poll_interval, "items": items},
        timeout=60 + sizes.fragment_spread + sizes.fragment_max_seconds,
    )
    result: dict[str, Any] = {
        "fragments": sizes.fragments,
        "max_seconds": sizes.fragment_max_seconds,
        "poll_interval": sizes.poll_interval,
    }
    for pattern, route in (("held", "wl"), ("poll", "worker")):
        mine = [r for r in out["results"] if r["pattern"] == pattern]
        delays = [r["delay"] for r in mine if "delay" in r]
        result[pattern] = {
            "delay": summary(delays),
            "requests_per_fragment": sum(r["requests"] for r in mine) / max(1, len(mine)),
            "answered": len(delays),
            "errors": len(mine) - len(delays),
            "computations": server.computations(f"ttf-{nonce}-{route}-"),
        }
    held, poll = result["held"], result["poll"]
    gain = (poll["delay"]["mean"] or 0) - (held["delay"]["mean"] or 0)
    row = Row(
        "3",
        f"Time to fragment: {sizes.fragments} fragments of 0–{sizes.fragment_max_seconds:g} s; "
        "delay from computation done to response received",
        store,
        f"held connection: mean {ms(held['delay']['mean'])}, p99 {ms(held['delay']['p99'])}",
        f"worker pattern (202, poll every {sizes.poll_interval * 1000:.0f} ms): "
        f"mean {ms(poll['delay']['mean'])}, p99 {ms(poll['delay']['p99'])}; "
        f"{poll['requests_per_fragment']:.1f} requests per fragment",
        f"{ms(gain)} sooner on average "
        f"({times((poll['delay']['mean'] or 0) / max(1e-9, held['delay']['mean'] or 0))})",
    )
    return result, [row]


# -- 4. held connections -----------------------------------------------------------------


def held_connections(
    store: str, store_url: str, sizes: Sizes, nonce: str, log_dir: Path
) -> Outcome:
    """Memory per held request on one worker: slow fragments against a bare sleeping route."""
    n = sizes.held
    result: dict[str, Any] = {"requests": n}
    # One fresh server for each, so each one's memory grows by its held requests alone.
    with app_servers(2, store_url, log_dir) as servers:
        for server, (name, route) in zip(
            servers, (("workerless", "wl"), ("bare", "sleep")), strict=True
        ):
            log(f"  held connections: {name}")
            result[name] = hold(server, f"/{route}/held-{nonce}-{{i}}?gate=1", n, nonce)
    ours, theirs = result["workerless"], result["bare"]
    extra = (ours["bytes_per_held_request"] - theirs["bytes_per_held_request"]) / 1024
    result["extra_kib_per_held_request"] = extra
    result["goal_extra_kib"] = HELD_GOAL_KIB

    def cell(f: dict[str, Any]) -> str:
        return (
            f"{f['bytes_per_held_request'] / 1024:.1f} KiB per held request; "
            f"{f['answered']:,}/{n:,} answered, all within "
            f"{ms(f['all_answered_after_release_s'])} of the release"
        )

    row = Row(
        "4",
        f"Held connections: {n:,} requests held at once on one worker (RSS of the worker)",
        store,
        cell(ours),
        "bare route holding as long: " + cell(theirs),
        f"{extra:+.1f} KiB per held request (goal ≤ +{HELD_GOAL_KIB:g} KiB); "
        f"{times(ours['bytes_per_held_request'] / max(1.0, theirs['bytes_per_held_request']))}"
        " the memory",
    )
    return result, [row]


def hold(server: AppServer, target: str, n: int, nonce: str) -> dict[str, Any]:
    """Hold ``n`` requests on ``server`` at once, read its memory, release them all."""
    # Run each code path once first, so what grows next is the held requests alone.
    server.request(f"/wl/warm-{nonce}?t=0")
    server.request(f"/sleep/warm-{nonce}?t=0")
    time.sleep(0.3)
    before = server.memory()
    client = start_client({"kind": "held", "port": server.port, "n": n, "target": target})
    started = time.monotonic()
    held = stalls = 0
    while time.monotonic() < started + 60 + n / 50 and client.poll() is None:
        try:
            held = int(server.stats(timeout=5)["held"])
        except OSError:  # too busy to answer yet (URLError and timeouts are OSErrors)
            stalls += 1
            continue
        if held >= n:
            break
        time.sleep(0.2)
    all_held_after = time.monotonic() - started
    time.sleep(0.5)
    during = server.memory()
    released = time.monotonic()
    server.release()
    try:
        stdout, stderr = client.communicate(timeout=120 + n / 50)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    answered_after = time.monotonic() - released
    after = server.memory()
    if client.returncode != 0:
        raise RuntimeError(f"the load client failed on held:\n{stderr}")
    out = json.loads(stdout)
    return {
        "held_at_once": held,
        "stats_timeouts": stalls,
        "answered": out["statuses"].get("200", 0),
        "statuses": out["statuses"],
        "errors": len(out["errors"]),
        "error_samples": out["errors"][:5],
        "rss_before": before["VmRSS"],
        "rss_held": during["VmRSS"],
        "rss_peak": after["VmHWM"],
        "bytes_per_held_request": (during["VmRSS"] - before["VmRSS"]) / n,
        "all_held_after_s": all_held_after,
        "all_answered_after_release_s": answered_after,
    }


# -- 5. cross-process wake-up --------------------------------------------------------------


def wakeup(servers: Sequence[AppServer], store: str, sizes: Sizes, nonce: str) -> Outcome:
    """With Redis: how long after the computation ends its waiters get the fragment.

    Each key is requested on the first server (which computes it), then by ``wakeup_waiters``
    waiters at once: on the second server for even keys, on the first for odd ones, so both
    groups are released by one computation's end, one group at a time.
    """
    first, second = servers[0], servers[1]
    targets = [
        (f"/wl/wake-{nonce}-{i}?t={sizes.wakeup_seconds}", (second if i % 2 == 0 else first).port)
        for i in range(sizes.wakeups)
    ]
    out = run_client(
        {
            "kind": "wakeup",
            "ports": [first.port, second.port],
            "targets": targets,
            "waiters": sizes.wakeup_waiters,
            "spacing": sizes.wakeup_spacing,
            "lag": sizes.wakeup_lag,
        },
        timeout=60 + sizes.wakeups * sizes.wakeup_spacing,
    )
    pid_of = {s.port: s.pid for s in servers}
    waiters = [r for r in out["results"] if r["role"] == "waiter" and "delay" in r]
    same = [r["delay"] for r in waiters if pid_of[r["port"]] == r["pid"]]
    other = [r["delay"] for r in waiters if pid_of[r["port"]] != r["pid"]]
    result: dict[str, Any] = {
        "keys": sizes.wakeups,
        "waiters_per_key": sizes.wakeup_waiters,
        "seconds": sizes.wakeup_seconds,
        "computations": sum(s.computations(f"wake-{nonce}-") for s in servers),
        "expected_computations": sizes.wakeups,
        "goal_other_process_mean": WAKEUP_GOAL,
        "other_process": summary(other),
        "same_process": summary(same),
        "errors": sum(1 for r in out["results"] if "delay" not in r),
    }
    cross, local = result["other_process"], result["same_process"]
    row = Row(
        "5",
        f"Cross-process wake-up: {sizes.wakeups} keys computed in one process, each waited "
        f"on by {sizes.wakeup_waiters} requests at once, in another process (half the keys) or "
        "in the computing one; delay from computation done to response received",
        store,
        f"{sizes.wakeup_waiters} waiters in another process: mean {ms(cross['mean'])}, "
        f"p99 {ms(cross['p99'])}",
        f"{sizes.wakeup_waiters} waiters in the computing process: mean {ms(local['mean'])}, "
        f"p99 {ms(local['p99'])}",
        f"other process: mean {ms(cross['mean'])} (goal ≤ {ms(WAKEUP_GOAL)}), "
        f"+{ms((cross['mean'] or 0) - (local['mean'] or 0))} over the same process",
    )
    return result, [row]
