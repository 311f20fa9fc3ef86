"""Measure workerless beside what users would do instead; print one table, write it as JSON.

    python tests/bench/run.py [--quick] [--store memory|redis|both] [--json PATH]
                              [--scenarios 1,2,3,4,5,6,7,8,9,10,11,12]

Starts real ``hypercorn --worker-class trio`` servers on free ports (and a redis-server for
the Redis store) and drives them from other processes: ``wrk`` and a trio client.  Every
figure is a comparison taken in the same run, since timings on a shared machine drift.
Scenario 6 sets off faults (a killed server, a killed redis-server, planted data, overload)
and reports each against its goal.  Scenario 7 compares stale-while-revalidate, early refresh
and ETags with their absence.  Scenario 8 compares a hit through WorkerlessMiddleware with
the same Starlette app's bare route.  Scenario 9 compares hit throughput with the metrics
endpoints on and off.  Scenario 10 loads one page streamed and fetched in Chromium.
Scenario 12 times fragments computed by `workerless worker` processes: pushed to held
requests vs the Worker Pattern's polling.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import redis_server  # noqa: E402

from bench import (  # noqa: E402
    faults,
    freshness,
    metrics,
    middleware,
    queues,
    remote,
    scenarios,
    streamed,
)
from bench.procs import app_servers  # noqa: E402
from bench.report import Row, log, machine, markdown  # noqa: E402

SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
TITLES = {
    1: "hit overhead",
    2: "stampede",
    3: "time to fragment",
    4: "held connections",
    5: "cross-process wake-up",
    6: "reliability",
    7: "freshness",
    8: "middleware hit",
    9: "metrics overhead",
    10: "streamed page",
    11: "queue",
    12: "worker-computed fragments",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 90 s)")
    parser.add_argument(
        "--store",
        choices=("memory", "redis", "both"),
        default="both" if shutil.which("redis-server") else "memory",
        help="which store(s) to measure (default: both when redis-server is installed)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench-results" / "latest.json",
        help="where to write the results (default: bench-results/latest.json)",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: sorted({int(s) for s in text.split(",") if s.strip()}),
        default=list(SCENARIOS),
        help="comma-separated scenario numbers (default: all, 1,2,3,4,5,6,7,8,9,10,11,12)",
    )
    args = parser.parse_args(argv)
    if not set(args.scenarios) <= set(SCENARIOS):
        parser.error(f"--scenarios: choose among {SCENARIOS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    chosen = set(args.scenarios)
    # The servers' logs, beside the JSON; only the last run's are kept.
    log_dir = args.json.resolve().with_name(f"{args.json.stem}-logs")
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    nonce = secrets.token_hex(4)
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {str(s): {} for s in sorted(chosen)}
    rows: list[Row] = []
    failures: list[str] = []
    # Held connections measure the connection, not the store: one store is enough, and
    # 5,000 computations at once on Redis take minutes on a small machine.
    held_store = "memory" if "memory" in stores else stores[0]
    # The faults are about the shared store: with Redis when it is measured at all.
    fault_store = "redis" if "redis" in stores else "memory"

    def record(
        number: int, store: str, measure: Callable[..., scenarios.Outcome], *args: Any
    ) -> None:
        log(f"scenario {number} ({TITLES[number]}), {store} store")
        begun = time.monotonic()
        try:
            result, new_rows = measure(*args)
        except Exception as exc:  # report it and go on: the other figures still count
            traceback.print_exc()
            failures.append(f"scenario {number}, {store} store: {type(exc).__name__}: {exc}")
            result = {"error": failures[-1]}
            new_rows = [Row(str(number), TITLES[number], store, "failed", "", str(exc)[:80])]
        # A scenario made of independent parts reports a part that broke and goes on.
        failures.extend(
            f"scenario {number}, {store} store: {f}" for f in result.get("failures", [])
        )
        result["elapsed_s"] = round(time.monotonic() - begun, 1)
        results[str(number)][store] = result
        rows.extend(new_rows)

    with ExitStack() as stack:
        redis = stack.enter_context(redis_server()) if "redis" in stores else None
        for store in stores:
            url, redis_pid = "memory://", None
            if store == "redis" and redis is not None and redis.proc is not None:
                url, redis_pid = redis.url, redis.proc.pid
            wanted = chosen & ({1, 2, 3, 5} if store == "redis" else {1, 2, 3})
            if wanted:
                count = 2 if wanted & {2, 5} else 1
                with app_servers(count, url, log_dir) as servers:
                    first = servers[0]
                    if 1 in wanted:
                        record(1, store, scenarios.hit_overhead, first, store, sizes, redis_pid)
                    if 2 in wanted:
                        record(2, store, scenarios.stampede, servers, store, sizes, nonce)
                    if 3 in wanted:
                        record(3, store, scenarios.time_to_fragment, first, store, sizes, nonce)
                    if 5 in wanted:
                        record(5, store, scenarios.wakeup, servers, store, sizes, nonce)
            if 4 in chosen and store == held_store:
                record(4, store, scenarios.held_connections, store, url, sizes, nonce, log_dir)
            if 6 in chosen and store == fault_store:
                record(6, store, faults.reliability, store, url, sizes, nonce, log_dir)
            if 7 in chosen:
                record(7, store, freshness.freshness, store, url, sizes, nonce, log_dir)
            if 8 in chosen:
                record(8, store, middleware.middleware_hits, store, url, sizes, log_dir, redis_pid)
            if 9 in chosen:
                record(9, store, metrics.metrics_overhead, store, url, sizes, log_dir)
            # The page's own server keeps its fragments in memory: the store is not the point.
            if 10 in chosen and store == held_store:
                record(10, "memory", streamed.streamed_page, "memory", sizes, nonce, log_dir)
            if 11 in chosen and store == "redis":
                record(11, store, queues.queue, url, args.quick, nonce, log_dir)
            if 12 in chosen and store == "redis":
                record(12, store, remote.worker_fragments, store, url, sizes, nonce, log_dir)
    for needs_redis in chosen & {5, 11, 12}:
        if "redis" not in stores:
            results[str(needs_redis)]["skipped"] = "needs the Redis store: --store redis or both"

    # Stable: each scenario's rows stay in the order measured (memory store first).
    rows.sort(key=lambda row: int(row.scenario))
    table = markdown(rows)
    host = machine()
    command = "python tests/bench/run.py" + "".join(
        " " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    report = {
        "command": command,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "machine": host,
        "quick": args.quick,
        "failures": failures,
        "stores": stores,
        "sizes": asdict(sizes),
        "results": results,
        "table": [row.as_dict() for row in rows],
        "markdown": table,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"Machine: {host['nproc']} CPUs ({host['cpu']}), {host['memory_gib']} GiB RAM, "
        f"Linux {host['kernel']}, Python {host['python']}; "
        f"`{command}` in {report['elapsed_seconds']:.0f} s\n"
    )
    print(table)
    print(f"\nwritten to {args.json}", file=sys.stderr)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
