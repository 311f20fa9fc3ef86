"""Scenario 11, the queue: pickup latency held vs polling, enqueue+take+ack throughput against
the bare route, and jobs lost while workers are SIGKILLed."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from servers import ROOT, hypercorn

from bench.report import Row, Rows, ms, summary, times

TITLE = "queue"
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PICKUP_GOAL = 0.005  # seconds, mean, POST to a held worker receiving the job


def queue(
    store_url: str, quick: bool, nonce: str, log_dir: Path
) -> tuple[dict[str, Any], list[Row]]:
    """Every row of scenario 11 on one queue server process (Redis only)."""
    rows = Rows("11", "redis", TITLE)
    env = {"WORKERLESS_QUEUE_URL": store_url, "WORKERLESS_QUEUE_TOKEN": TOKEN,
           "WORKERLESS_PREFIX": f"bench-{nonce}:", "WORKERLESS_QUEUE_LEASE": "2"}  # fmt: skip
    with hypercorn("bench.queue_app:app", log_dir, env=env, args=("--backlog", "2048")) as server:
        url = server.url
        jobs = 15 if quick else 60
        rows.run("pickup", lambda: trio.run(_pickup, url, jobs, nonce))
        seconds = 1.0 if quick else 4.0
        for workers in (1, 4, 16):
            rows.run(
                f"throughput {workers}",
                lambda w=workers: trio.run(_throughput, url, w, seconds, nonce),
            )
        kills = 4 if quick else 12
        rows.run("kills", lambda: _kills(url, 40 if quick else 300, kills, nonce, log_dir))
    return rows.outcome()


def _client(url: str, connections: int = 100) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30, limits=limits)


async def _pickup(url: str, jobs: int, nonce: str) -> tuple[dict[str, Any], Row]:
    """One worker, jobs posted one at a time at random gaps: held take vs a 500 ms poll."""
    figures: dict[str, Any] = {"jobs": jobs}

    async def run(
        name: str, take: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]
    ) -> None:
        q = f"pickup-{name}-{nonce}"
        delays: list[float] = []
        posts: list[float] = []
        async with _client(url) as client, trio.open_nursery() as nursery:
            received = trio.Event()

            async def worker() -> None:
                nonlocal received
                while True:
                    response = await take(client, q)
                    if response.status_code != 200:
                        continue
                    job = response.json()
                    delays.append(time.perf_counter() - job["job"]["t0"])
                    received.set()
                    await client.post(f"/q/{q}/{job['id']}/done", params={"lease": job["lease"]})

            nursery.start_soon(worker)
            await trio.sleep(0.3)
            for _ in range(jobs):
                received = trio.Event()
                # A random phase against the poller's 500 ms cycle, as jobs really arrive.
                await trio.sleep(0.05 + secrets.randbelow(500) / 1000)
                t0 = time.perf_counter()
                await client.post(f"/q/{q}", json={"t0": t0})
                posts.append(time.perf_counter() - t0)
                with trio.fail_after(5):
                    await received.wait()
            nursery.cancel_scope.cancel()
        figures[name] = summary(delays)
        figures[f"{name}_post"] = summary(posts)

    async def held(client: httpx.AsyncClient, q: str) -> httpx.Response:
        return await client.get(f"/q/{q}", params={"wait": 10})

    async def poll(client: httpx.AsyncClient, q: str) -> httpx.Response:
        response = await client.get(f"/q/{q}")
        if response.status_code == 204:
            await trio.sleep(0.5)
        return response

    await run("held", held)
    await run("poll", poll)
    h, p = figures["held"], figures["poll"]
    verdict = "goal met" if h["mean"] <= PICKUP_GOAL else "goal missed"
    row = Row(
        "11", "Queue pickup: a job posted to a waiting worker; delay from POST to the worker "
        "receiving it", "redis",
        f"held take (`?wait=`): mean {ms(h['mean'])}, p99 {ms(h['p99'])} (the POST's own "
        f"round trip: mean {ms(figures['held_post']['mean'])})",
        f"worker polling every 500 ms: mean {ms(p['mean'])}, p99 {ms(p['p99'])}",
        f"{times(p['mean'] / h['mean'])} sooner on average; {verdict} (≤ 5 ms mean)",
    )  # fmt: skip
    return figures, row


async def _throughput(
    url: str, workers: int, seconds: float, nonce: str
) -> tuple[dict[str, Any], Row]:
    """``workers`` loops of POST + GET + done against as many loops of GET /bare."""
    q = f"through-{workers}-{nonce}"

    async def loop(step: Callable[[httpx.AsyncClient], Awaitable[int]]) -> tuple[float, int]:
        done = errors = 0
        async with _client(url, workers) as client:
            stop = trio.current_time() + seconds
            async with trio.open_nursery() as nursery:

                async def one() -> None:
                    nonlocal done, errors
                    while trio.current_time() < stop:
                        if await step(client):
                            done += 1
                        else:
                            errors += 1

                for _ in range(workers):
                    nursery.start_soon(one)
        return done / seconds, errors

    async def job(client: httpx.AsyncClient) -> int:
        posted = await client.post(f"/q/{q}", json={"n": 1})
        taken = await client.get(f"/q/{q}")
        if posted.status_code != 201 or taken.status_code != 200:
            return 0
        data = taken.json()
        acked = await client.post(f"/q/{q}/{data['id']}/done", params={"lease": data["lease"]})
        return int(acked.status_code == 200)

    async def bare(client: httpx.AsyncClient) -> int:
        return int((await client.get("/bare")).status_code == 200)

    bare_rate, bare_errors = await loop(bare)
    job_rate, job_errors = await loop(job)
    figures = {"workers": workers, "jobs_per_s": job_rate, "bare_per_s": bare_rate,
               "errors": job_errors + bare_errors}  # fmt: skip
    row = Row(
        "11", f"Queue throughput: enqueue + take + ack over HTTP, {workers} concurrent "
        "worker(s), one server process", "redis",
        f"{job_rate:,.0f} jobs/s ({3 * job_rate:,.0f} req/s); {job_errors} errors",
        f"bare route, same concurrency: {bare_rate:,.0f} req/s",
        f"{times(3 * job_rate / bare_rate)} the bare route's request rate "
        f"({times(job_rate / bare_rate)} in jobs)",
    )  # fmt: skip
    return figures, row


def _kills(
    url: str, jobs: int, kills: int, nonce: str, log_dir: Path
) -> tuple[dict[str, Any], Row]:
    """Two worker processes, one SIGKILLed and restarted every 0.5 s while they work."""
    folder = log_dir / f"queue-kills-{nonce}"
    folder.mkdir()
    q = f"kills-{nonce}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
           "QUEUE_TEST_DIR": str(folder), "WORKERLESS_QUEUE_TOKEN": TOKEN}  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "workerless", "worker", "apps.queue_workers:Recorder",
             "--queue", q, "--url", url, "--concurrency", "4", "--wait", "5"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        posted = {client.post(f"/q/{q}", json={"seconds": 0.2}).json()["id"] for _ in range(jobs)}
        procs = [start(), start()]
        try:
            for i in range(kills):
                time.sleep(0.5)
                procs[i % 2].send_signal(signal.SIGKILL)
                procs[i % 2].wait(10)
                procs[i % 2] = start()
            give_up = time.monotonic() + 60
            done_path = folder / "done"
            done: list[str] = []
            while time.monotonic() < give_up:
                done = done_path.read_text().split() if done_path.exists() else []
                if posted <= set(done):
                    break
                time.sleep(0.2)
            info = client.get(f"/j/{q}").json()
        finally:
            for proc in procs:
                proc.kill()
                proc.wait(10)
    lost = len(posted - set(done))
    twice = len(done) - len(set(done))
    redelivered = info["counts"].get("redelivered", 0)
    figures = {"jobs": jobs, "kills": kills, "lost": lost, "done_twice": twice,
               "redelivered": redelivered, "dead": info["dead"]}  # fmt: skip
    row = Row(
        "11", f"Queue under worker SIGKILLs: {jobs} jobs of 0.2 s, 2 workers × 4, one killed "
        f"and restarted every 0.5 s ({kills} kills), lease 2 s", "redis",
        f"{lost} lost; {figures['redelivered']} redelivered after their lease; "
        f"{twice} done twice (at least once)",
        "goal: 0 lost", "goal met" if lost == 0 else "goal missed",
    )  # fmt: skip
    return figures, row
