"""The queue under faults, with real processes: workers SIGKILLed or stopped mid-job, Redis
killed and restarted with AOF, Redis down, garbage planted in Redis."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis as redis_py
import trio
from queue_helpers import AUTH, TOKEN, queue_api
from servers import ROOT, Hypercorn, RedisServer, free_port, hypercorn, wait_for_port

pytestmark = pytest.mark.redis


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"after {timeout} s: {what}")
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@contextmanager
def queue_server(tmp_path: Path, redis_url: str, **env: str) -> Iterator[Hypercorn]:
    """``hypercorn workerless.queue:app`` in its own process on ``redis_url``."""
    settings = {"WORKERLESS_QUEUE_URL": redis_url, "WORKERLESS_QUEUE_TOKEN": TOKEN, **env}
    with hypercorn("workerless.queue:app", tmp_path, env=settings) as server:
        yield server


@contextmanager
def worker(
    server: Hypercorn, queue: str, folder: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``workerless worker apps.queue_workers:Recorder`` on ``queue``; killed after."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
           "QUEUE_TEST_DIR": str(folder), "WORKERLESS_QUEUE_TOKEN": TOKEN}  # fmt: skip
    log = (folder / f"worker-{secrets.token_hex(3)}.log").open("wb")
    command = [sys.executable, "-m", "workerless", "worker", "apps.queue_workers:Recorder",
               "--queue", queue, "--url", server.url, "--wait", "5", *args]  # fmt: skip
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()


def test_worker_killed_mid_job_job_redelivered_after_lease_and_done_once(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Two workers: the one running a job keeps its lease while alive (renewed), and when it
    is SIGKILLed the other gets the job after the lease and finishes it, once."""
    queue = f"k{secrets.token_hex(4)}"
    with (
        queue_server(tmp_path, redis.url, WORKERLESS_QUEUE_LEASE="1") as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client,
        worker(server, queue, tmp_path) as first,
        worker(server, queue, tmp_path) as second,
    ):
        job_id = client.post(f"/q/{queue}", json={"seconds": 60}).json()["id"]
        until(lambda: len(lines(tmp_path / "started")) == 2, 20, "a worker starts the job")
        started_by = int(lines(tmp_path / "started")[1])
        time.sleep(2.5)  # two and a half leases: renewed, so nobody else started it
        assert len(lines(tmp_path / "started")) == 2
        victim, survivor = (first, second) if started_by == first.pid else (second, first)
        victim.send_signal(signal.SIGKILL)
        until(lambda: job_id in lines(tmp_path / "done"), 20, "the other worker finishes it")
        time.sleep(1.5)
        assert survivor.poll() is None
        assert lines(tmp_path / "done") == [job_id]
        assert lines(tmp_path / "started")[::2] == [job_id, job_id]
        assert client.get(f"/q/{queue}/{job_id}").status_code == 404


def test_sigterm_finishes_the_running_job_or_releases_it(
    redis: RedisServer, tmp_path: Path
) -> None:
    """On SIGTERM a worker finishes a job that ends within its grace and exits 0; a job that
    would outlast the grace is released: back in the queue at once, not after its lease."""
    queue = f"s{secrets.token_hex(4)}"
    with (
        queue_server(tmp_path, redis.url, WORKERLESS_QUEUE_LEASE="60") as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client,
    ):
        with worker(server, queue, tmp_path, "--grace", "10") as proc:
            short = client.post(f"/q/{queue}", json={"seconds": 1}).json()["id"]
            until(lambda: bool(lines(tmp_path / "started")), 20, "the worker starts the job")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        assert lines(tmp_path / "done") == [short]
        with worker(server, queue, tmp_path, "--grace", "0.5") as proc:
            long = client.post(f"/q/{queue}", json={"seconds": 60}).json()["id"]
            until(lambda: len(lines(tmp_path / "started")) == 4, 20, "it starts the long job")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        status = client.get(f"/q/{queue}/{long}").json()
        assert (status["state"], status["attempts"]) == ("waiting", 0)


@contextmanager
def aof_redis(folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server writing every change to its append-only file before answering."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "yes", "--appendfsync", "always",
         "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_redis_killed_and_restarted_with_aof_loses_no_accepted_job(tmp_path: Path) -> None:
    """Every job answered 201 before Redis was SIGKILLed is there after its restart (AOF,
    appendfsync always); jobs acknowledged done before the kill do not come back."""
    port, queue = free_port(), "aof"
    (tmp_path / "redis").mkdir()
    url = f"redis://127.0.0.1:{port}/0"
    with (
        queue_server(tmp_path, url) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client,
    ):
        with aof_redis(tmp_path / "redis", port) as proc:
            posted = [client.post(f"/q/{queue}", json={"i": i}) for i in range(100)]
            assert {p.status_code for p in posted} == {201}
            done = set()
            for _ in range(10):
                job = client.get(f"/q/{queue}").json()
                client.post(f"/q/{queue}/{job['id']}/done", params={"lease": job["lease"]})
                done.add(job["id"])
            proc.send_signal(signal.SIGKILL)
        outage = client.get(f"/j/{queue}")
        with aof_redis(tmp_path / "redis", port):
            taken = set()
            while (response := client.get(f"/q/{queue}")).status_code == 200:
                taken.add(response.json()["id"])
    assert outage.status_code == 503
    assert taken == {p.json()["id"] for p in posted} - done


async def test_redis_down_answers_503_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down every route answers 503 with Retry-After and logs why; once Redis is
    back the same server works again."""
    server = RedisServer(free_port())
    server.start()
    try:
        with trio.fail_after(30):
            async with queue_api(server.url) as client:
                await client.post("/q/down", json={})
                server.stop()
                with caplog.at_level(logging.ERROR, "workerless.queue"):
                    down = [
                        await client.post("/q/down", json={}),
                        await client.get("/q/down", params={"wait": 5}),
                        await client.get("/j/down"),
                        await client.get("/stats/"),
                    ]
                await trio.to_thread.run_sync(server.start)
                back = await client.post("/q/down", json={})
    finally:
        server.stop()
    assert [r.status_code for r in down] == [503, 503, 503, 503]
    assert down[0].headers["retry-after"] == "1"
    assert "lost Redis" in caplog.text
    assert back.status_code == 201


async def test_garbage_planted_in_redis_is_skipped_or_refused(redis: RedisServer) -> None:
    """A stream entry pointing at no job is dropped and the next good job served; a queue key
    holding the wrong type gets 503 and a log line, never a 500, and /stats/ still lists the
    other queues."""
    queue = f"g{secrets.token_hex(4)}"
    base = f"workerless:q:{{{queue}}}:"
    with redis_py.Redis.from_url(redis.url) as client_py, trio.fail_after(20):
        async with queue_api(redis.url) as client:
            good = (await client.post(f"/q/{queue}", json="good")).json()["id"]
            client_py.xadd(f"{base}s:high", {"id": "f" * 24})
            client_py.xadd(f"{base}s:high", {"junk": "x"})
            client_py.hset(f"{base}meta", "e" * 24, "{not json")
            taken = await client.get(f"/q/{queue}")
            odd = await client.get(f"/q/{queue}/{'e' * 24}")
            client_py.set(f"{base}s:low", "not a stream")
            refused = await client.post(f"/q/{queue}", params={"priority": "low"}, json=1)
            stats = (await client.get("/stats/")).json()["queues"]
        client_py.delete(*client_py.keys(f"{base}*"))
    assert taken.json()["id"] == good
    assert odd.status_code == 404
    assert refused.status_code == 503
    assert {"queue": queue, "error": "its Redis keys hold foreign data"} in stats
