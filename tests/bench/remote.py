"""Scenario 12: worker-computed fragments, held and pushed, vs the Worker Pattern's polling.

One web server (apps/remote_app.py) and two fragment workers on one Redis.  Each fragment is
computed on a worker either way, by the same job: ``/timed/`` holds the request until the
worker's notice; ``/polled/`` (a 1 ms deadline) answers 202 at once and the client asks again
every ``poll_interval`` s, as rack-worker's clients do.  The delay is measured from the
computation's end (the worker's wall clock, written in the response) to the response's arrival.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import trio
from servers import fragment_worker, hypercorn

from bench.report import Row, Rows, log, ms, summary, times
from bench.scenarios import Outcome, Sizes

__all__ = ["worker_fragments"]

APP = "apps.remote_app:app"


def worker_fragments(
    store: str, store_url: str, sizes: Sizes, nonce: str, log_dir: Path
) -> Outcome:
    """Time to fragment for fragments computed on workers: pushed to a held request vs polled."""
    env = {"WORKERLESS_STORE": store_url, "REMOTE_COUNTER_URL": store_url}
    rows = Rows("12", store, "worker-computed fragments")
    with ExitStack() as stack:
        server = stack.enter_context(hypercorn(APP, log_dir, env=env, args=("--backlog", "1024")))
        for _ in range(2):
            stack.enter_context(
                fragment_worker(APP, log_dir, ["bench"], env=env, args=("--concurrency", "64"))
            )
        rows.run("held vs polled", lambda: _compare(server.url, sizes, nonce))
    return rows.outcome()


def _compare(url: str, sizes: Sizes, nonce: str) -> tuple[dict[str, Any], Row]:
    rng = random.Random(12)
    plan = [
        (rng.uniform(0, sizes.fragment_spread), rng.uniform(0, sizes.fragment_max_seconds))
        for _ in range(sizes.fragments)
    ]
    delays: dict[str, list[float]] = {"held": [], "poll": []}
    requests = {"held": 0, "poll": 0}
    errors: list[str] = []

    async def one(client: httpx.AsyncClient, pattern: str, i: int, at: float, t: float) -> None:
        await trio.sleep(at)
        route = "timed" if pattern == "held" else "polled"
        target = f"{url}/{route}/w-{nonce}-{i}?t={t:.3f}"
        while True:
            requests[pattern] += 1
            response = await client.get(target)
            if response.status_code == 200:
                delays[pattern].append(time.time() - response.json()["done_at"])
                return
            if response.status_code != 202:
                errors.append(f"{pattern} {i}: {response.status_code}")
                return
            await trio.sleep(sizes.poll_interval)

    async def main() -> None:
        limits = httpx.Limits(max_connections=None)
        with trio.fail_after(120 + sizes.fragment_spread + sizes.fragment_max_seconds):
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                # One cold job first, so neither side pays the workers' first job.
                await client.get(f"{url}/timed/w-{nonce}-warm?t=0")
                async with trio.open_nursery() as nursery:
                    for i, (at, t) in enumerate(plan):
                        nursery.start_soon(one, client, "held", i, at, t)
                        nursery.start_soon(one, client, "poll", i, at, t)

    log(f"    {len(plan)} fragments each way")
    trio.run(main)
    held, poll = summary(delays["held"]), summary(delays["poll"])
    figures = {
        "fragments": len(plan),
        "poll_interval": sizes.poll_interval,
        "held": {"delay": held, "requests": requests["held"]},
        "poll": {"delay": poll, "requests": requests["poll"]},
        "errors": errors,
    }
    if errors or held["n"] != len(plan) or poll["n"] != len(plan):
        raise RuntimeError(f"not every fragment arrived: {errors[:3]}")
    row = Row(
        "12",
        f"Worker-computed fragments: {len(plan)} fragments of 0–{sizes.fragment_max_seconds:g} s "
        "computed by `workerless worker` (2 processes); delay from computation done to response",
        "redis",
        f"held connection + push: mean {ms(held['mean'])}, p99 {ms(held['p99'])}",
        f"worker pattern (202, poll every {sizes.poll_interval * 1000:.0f} ms): "
        f"mean {ms(poll['mean'])}, p99 {ms(poll['p99'])}; "
        f"{requests['poll'] / len(plan):.1f} requests per fragment",
        f"{ms((poll['mean'] or 0) - (held['mean'] or 0))} sooner on average "
        f"({times((poll['mean'] or 0) / max(1e-9, held['mean'] or 0))})",
    )
    return figures, row
