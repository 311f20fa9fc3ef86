"""The queue service's settings: refused without a token unless open, named variables, and the
Python API (QueueEngine) that other parts of workerless build on."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import redis as redis_py
import trio
import trio.testing
from servers import ROOT, RedisServer, free_port, serve_in_process

from workerless import ConfigurationError
from workerless._cli import main
from workerless.queue import JobNotFound, LeaseLost, QueueEngine
from workerless.queue._app import create_app


def test_refuses_to_start_without_a_token(redis: RedisServer) -> None:
    """No WORKERLESS_QUEUE_TOKEN and no WORKERLESS_QUEUE_OPEN=1: a ConfigurationError names
    both; no Redis URL: it names WORKERLESS_QUEUE_URL; a bad number names its variable."""
    with pytest.raises(ConfigurationError, match=r"WORKERLESS_QUEUE_TOKEN.*WORKERLESS_QUEUE_OPEN"):
        create_app({"WORKERLESS_QUEUE_URL": redis.url})
    with pytest.raises(ConfigurationError, match="WORKERLESS_QUEUE_URL"):
        create_app({"WORKERLESS_QUEUE_TOKEN": "t", "WORKERLESS_STORE": "memory://"})
    with pytest.raises(ConfigurationError, match="WORKERLESS_QUEUE_LEASE"):
        create_app({"WORKERLESS_QUEUE_URL": redis.url, "WORKERLESS_QUEUE_TOKEN": "t",
                    "WORKERLESS_QUEUE_LEASE": "soon"})  # fmt: skip
    with pytest.raises(ConfigurationError, match="WORKERLESS_QUEUE_OPEN"):
        create_app({"WORKERLESS_QUEUE_URL": redis.url, "WORKERLESS_QUEUE_OPEN": "maybe"})


def test_hypercorn_refuses_to_serve_the_ready_app_without_a_token(
    redis: RedisServer, tmp_path: object
) -> None:
    """``hypercorn workerless.queue:app`` without a token exits, its log naming the variable."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WORKERLESS_QUEUE_URL": redis.url}
    done = subprocess.run(
        [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind",
         f"127.0.0.1:{free_port()}", "workerless.queue:app"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "WORKERLESS_QUEUE_TOKEN" in done.stdout + done.stderr


@pytest.mark.redis
async def test_open_mode_serves_without_a_token(redis: RedisServer) -> None:
    """WORKERLESS_QUEUE_OPEN=1 serves the API to anyone, WORKERLESS_STORE as its Redis."""
    app = create_app({"WORKERLESS_STORE": redis.url, "WORKERLESS_QUEUE_OPEN": "1"})
    with trio.fail_after(20):
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
            posted = await client.post("/q/open", json={"free": True})
            taken = await client.get("/q/open")
            await client.post(f"/q/open/{taken.json()['id']}/done",
                              params={"lease": taken.json()["lease"]})  # fmt: skip
    assert posted.status_code == 201
    assert taken.json()["job"] == {"free": True}


@pytest.mark.redis
async def test_engine_python_api(redis: RedisServer) -> None:
    """QueueEngine works without HTTP: enqueue, a held take woken by a later enqueue, done,
    and the typed errors for an unknown job and a lease that is not held."""
    engine = QueueEngine(redis.url, prefix="engine-test:", lease=5)
    await engine.open()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            got = []
            arrived = trio.Event()

            async def held() -> None:
                got.append(await engine.take("py", wait=10))
                arrived.set()

            nursery.start_soon(held)
            await trio.sleep(0.2)
            enqueued = await engine.enqueue("py", '{"k": 1}', priority="high")
            await arrived.wait()
            job = got[0]
            assert job is not None
            assert (job.id, job.json(), job.attempt) == (enqueued.id, {"k": 1}, 1)
            with pytest.raises(LeaseLost):
                await engine.done(("py", job.id, "someone-else"))
            await engine.done(job)
            with pytest.raises(JobNotFound):
                await engine.status("py", job.id)
            nursery.cancel_scope.cancel()
    engine.close()


@pytest.mark.redis
async def test_enqueue_hands_the_job_to_a_held_take_of_its_process(redis: RedisServer) -> None:
    """An enqueue while a take of the same process is held gives that take the job itself,
    under a lease, before the watcher's XREAD could see it (here it watches another db)."""
    engine = QueueEngine(redis.url, prefix="handoff-test:", lease=5)
    engine._blocking = redis_py.Redis(port=redis.port, db=1, socket_timeout=5)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            got = []

            async def held() -> None:
                got.append(await engine.take("direct", wait=10))

            nursery.start_soon(held)
            await trio.sleep(0.2)  # the take is held, its watcher blocked for a second
            enqueued = await engine.enqueue("direct", '{"k": 2}')
            await trio.testing.wait_all_tasks_blocked()
            assert [j.id if j else None for j in got] == [enqueued.id]
            assert (await engine.status("direct", enqueued.id)).state == "taken"
            assert got[0] is not None
            await engine.done(got[0])
            nursery.cancel_scope.cancel()
    engine.close()
    engine._blocking.close()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("json:dumps", "is a function, not a workerless.Worker subclass or a QuartTrio app"),
        ("workerless.demo:app", r"no compute='worker' fragment of .* uses queue\(s\) \['q'\]"),
        ("apps.example_quart:app", "has no Workerless"),
        ("no_such_module_here:Worker", "cannot load"),
        ("nocolon", "module:attribute"),
    ],
)
def test_worker_command_refuses_what_it_cannot_run(target: str, message: str) -> None:
    """`workerless worker TARGET` exits with a message saying what TARGET is and what it needs."""
    with pytest.raises(SystemExit, match=message):
        main(["worker", target, "--queue", "q"])


def test_worker_command_passes_fragment_options_to_the_fragment_worker() -> None:
    """`workerless worker app:app` hands --grace and --max-attempts to the fragment worker,
    which refuses bad values with a message (the demo's queue is ``demo``)."""
    with pytest.raises(SystemExit, match="grace must be >= 0"):
        main(["worker", "workerless.demo:app", "--queue", "demo", "--grace", "-1"])
    with pytest.raises(SystemExit, match="must be positive"):
        main(["worker", "workerless.demo:app", "--queue", "demo", "--max-attempts", "0"])
