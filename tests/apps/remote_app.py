"""An app with worker-computed fragments, for tests/test_remote.py and bench scenario 12.

Served by hypercorn (the web side) and run by ``workerless worker
apps.remote_app:app --queue reports`` (the worker side).  ``REMOTE_COUNTER_URL`` is the Redis
where each computation is counted (INCR ``remote:computations:<name>``), ``REMOTE_SLEEP``
how long a heavy fragment takes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
import trio
from quart import jsonify, request
from quart_trio import QuartTrio

from workerless import Workerless, fragment_jobs
from workerless.queue import Queues

SLEEP = float(os.environ.get("REMOTE_SLEEP", "1"))
counter = redis.Redis.from_url(os.environ["REMOTE_COUNTER_URL"], socket_timeout=5)

app = QuartTrio(__name__)
workerless = Workerless(app)


async def count(name: str) -> int:
    return int(await trio.to_thread.run_sync(counter.incr, f"remote:computations:{name}"))


@app.before_request
async def arrived() -> None:
    # With ?gate=1 the tests count the requests that reached a server, then open the gate.
    if request.args.get("gate") and request.view_args:
        name = request.view_args.get("name")
        await trio.to_thread.run_sync(counter.incr, f"remote:arrived:{name}")


async def work(name: str) -> Any:
    number = await count(name)
    if request.args.get("gate"):
        with trio.fail_after(60):
            gate = f"remote:gate:{name}"
            while not await trio.to_thread.run_sync(counter.exists, gate):  # noqa: ASYNC110
                await trio.sleep(0.05)  # the test opens the gate from another process
    await trio.sleep(SLEEP)
    return jsonify(name=name, computation=number, pid=os.getpid(), page=request.args.get("page"))


@workerless.fragment("/heavy/<name>", compute="worker", queue="reports")
async def heavy(name: str) -> Any:
    return await work(name)


@workerless.fragment("/fresh/<name>", compute="worker", queue="reports", ttl=1, stale=60)
async def fresh(name: str) -> Any:
    return await work(name)


@workerless.fragment("/slow/<name>", compute="worker", queue="kill")
async def slow(name: str) -> Any:
    return await work(name)


@workerless.fragment("/idle/<name>", compute="worker", queue="idle", deadline=1)
async def idle(name: str) -> Any:
    return await work(name)


@workerless.fragment("/failing/<name>", compute="worker", queue="reports")
async def failing(name: str) -> Any:
    await count(name)
    raise RuntimeError(f"report {name} cannot be made")


@workerless.fragment("/cpu/<name>", compute="worker", queue="reports")
async def cpu(name: str) -> Any:
    await count(name)
    give_up = time.monotonic() + SLEEP
    rounds = 0
    while time.monotonic() < give_up:  # CPU-bound: would freeze a web process's event loop
        rounds += 1
    return jsonify(name=name, rounds=rounds, pid=os.getpid())


@workerless.fragment("/greeting", compute="worker", queue="reports", headers=["Accept-Language"])
async def greeting() -> Any:
    # Runs on a `workerless worker` process; it sees Accept-Language, never the Cookie.
    language = request.headers.get("Accept-Language")
    return jsonify(language=language, cookie=request.headers.get("Cookie"))


@workerless.fragment("/external/<name>", compute="worker", queue="external")
async def external(name: str) -> Any:
    raise AssertionError("computed by a worker speaking HTTP, never by this view")


app.register_blueprint(fragment_jobs(workerless, token="test-token"), url_prefix="/fragment-jobs")
Queues(app, url_prefix="/queues", token="test-token")  # shows the fragment jobs' backlog


@app.get("/bare")
async def bare() -> str:
    return "ok"


async def timed() -> Any:
    seconds = float(request.args.get("t", "0"))
    await trio.sleep(seconds)
    # Wall-clock time the computation ended: the bench measures from here to the client.
    return jsonify(done_at=time.time())


# Bench scenario 12: the same job, the same workers; held until pushed, or the Worker Pattern
# (a 1 ms deadline: 202 at once, the client polls).
@workerless.fragment("/timed/<name>", compute="worker", queue="bench", deadline=600)
async def held(name: str) -> Any:
    return await timed()


@workerless.fragment("/polled/<name>", compute="worker", queue="bench", deadline=0.001)
async def polled(name: str) -> Any:
    return await timed()
