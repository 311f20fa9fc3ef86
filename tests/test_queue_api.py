"""The queue's HTTP API on a real hypercorn and a real redis-server: presque's routes, leases,
held takes, priorities, delays, uniq, retries and dead letters, stop/start."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
import redis as redis_py
import trio
from queue_helpers import queue_api
from servers import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def queue() -> str:
    """A queue name of its own for each test, on the session's shared redis-server."""
    return f"t{secrets.token_hex(4)}"


async def take(client: httpx.AsyncClient, queue: str, wait: float = 0) -> httpx.Response:
    return await client.get(f"/q/{queue}", params={"wait": wait})


async def while_held(
    client: httpx.AsyncClient, queue: str, action: Awaitable[httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """Run ``action`` while a take on ``queue`` is held: the take's answer, the action's."""
    got: list[httpx.Response] = []

    async def held() -> None:
        got.append(await take(client, queue, wait=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(held)
        await trio.sleep(0.3)
        done = await action
    return got[0], done


async def answer(client: httpx.AsyncClient, queue: str, job: dict[str, object], action: str,
                 **kwargs: object) -> httpx.Response:  # fmt: skip
    url = f"/q/{queue}/{job['id']}/{action}"
    return await client.post(url, params={"lease": str(job["lease"])}, **kwargs)  # type: ignore[arg-type]


async def test_post_take_done_round_trip(redis: RedisServer, queue: str) -> None:
    """POST stores the JSON text as is (201, id, Location); a take gives it with a lease;
    done removes it (its Location then answers 404)."""
    body = '{"n": 12345678901234567890123, "x": 1.10, "s": "é\\u00e9",  "nested": [true]}'
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            posted = await client.post(f"/q/{queue}", content=body)
            location = posted.headers["location"]
            status = await client.get(location)
            taken = await take(client, queue)
            done = await answer(client, queue, taken.json(), "done")
            after = await client.get(location)
            empty = await take(client, queue)
    assert posted.status_code == 201
    assert location == f"/q/{queue}/{posted.json()['id']}"
    assert status.json()["state"] == "waiting"
    assert taken.status_code == 200
    job = taken.json()
    assert (job["id"], job["attempt"], job["priority"]) == (posted.json()["id"], 1, "normal")
    assert taken.headers["job-id"] == job["id"]
    assert taken.headers["job-lease"] == job["lease"]
    assert taken.text.endswith(f'"job": {body}}}')  # byte for byte, big numbers kept
    assert done.status_code == 200
    assert after.status_code == 404
    assert empty.status_code == 204


async def test_lease_runs_out_job_goes_to_next_taker_old_ack_refused(
    redis: RedisServer, queue: str
) -> None:
    """A job not acknowledged within its lease goes to the next take (attempt 2); the first
    taker's done is refused 409 and the job stays with the second, who can finish it."""
    with trio.fail_after(20):
        async with queue_api(redis.url, lease=0.5) as client:
            await client.post(f"/q/{queue}", json={"a": 1})
            first = (await take(client, queue)).json()
            too_soon = await take(client, queue)
            second = (await take(client, queue, wait=3)).json()
            late = await answer(client, queue, first, "done")
            state = (await client.get(f"/q/{queue}/{first['id']}")).json()["state"]
            done = await answer(client, queue, second, "done")
    assert too_soon.status_code == 204
    assert second["id"] == first["id"]
    assert second["attempt"] == 2
    assert second["lease"] != first["lease"]
    assert late.status_code == 409
    assert state == "taken"
    assert done.status_code == 200


async def test_touch_keeps_the_lease(redis: RedisServer, queue: str) -> None:
    """A taker that touches its job within each lease keeps it past the lease's length."""
    with trio.fail_after(20):
        async with queue_api(redis.url, lease=0.6) as client:
            await client.post(f"/q/{queue}", json={})
            job = (await take(client, queue)).json()
            for _ in range(4):
                await trio.sleep(0.3)
                assert (await answer(client, queue, job, "touch")).status_code == 200
            other = await take(client, queue)
            done = await answer(client, queue, job, "done")
    assert other.status_code == 204
    assert done.status_code == 200


async def test_held_take_gets_a_job_posted_later_and_204_when_none(
    redis: RedisServer, queue: str
) -> None:
    """?wait= holds the take until a job is posted (answered at once), or answers 204 when
    the wait ends with none."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            got, posted = await while_held(
                client, queue, client.post(f"/q/{queue}", json={"late": True})
            )
            before = trio.current_time()
            none = await take(client, queue, wait=0.5)
            waited = trio.current_time() - before
    assert got.status_code == 200
    assert got.json()["id"] == posted.json()["id"]
    assert none.status_code == 204
    assert waited >= 0.45


async def test_many_held_takes_each_job_given_once(redis: RedisServer, queue: str) -> None:
    """200 held takes and 200 jobs posted afterwards: every job goes to exactly one take, and
    no per-take consumer is left in the stream's group."""
    with trio.fail_after(60):
        async with queue_api(redis.url) as client:
            taken: list[str] = []

            async def held() -> None:
                response = await take(client, queue, wait=15)
                assert response.status_code == 200
                job = response.json()
                taken.append(job["id"])
                assert (await answer(client, queue, job, "done")).status_code == 200

            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(held)
                await trio.sleep(0.5)
                posted = [
                    (await client.post(f"/q/{queue}", json={"i": i})).json()["id"]
                    for i in range(200)
                ]
            info = (await client.get(f"/j/{queue}")).json()
    assert sorted(taken) == sorted(posted)
    assert (info["length"], info["pending"]) == (0, 0)
    with redis_py.Redis.from_url(redis.url) as direct:
        groups = direct.xinfo_groups(f"workerless:q:{{{queue}}}:s:normal")
    assert [(g["name"], g["consumers"]) for g in groups] == [(b"workers", 0)]


async def test_job_handed_to_a_departed_take_is_not_lost(redis: RedisServer, queue: str) -> None:
    """A held take whose client went away gets no job: the job posted next goes to the next
    take at once, not after a lease."""
    with trio.fail_after(20):
        async with queue_api(redis.url, lease=30) as client:
            with trio.move_on_after(0.3):
                await take(client, queue, wait=10)
            await trio.sleep(0.2)  # the server notices the disconnect
            posted = await client.post(f"/q/{queue}", json={})
            taken = await take(client, queue, wait=5)
    assert taken.status_code == 200
    assert taken.json()["id"] == posted.json()["id"]


async def test_priorities_high_drains_first(redis: RedisServer, queue: str) -> None:
    """Jobs come out high first, then normal, then low, in order of posting within each."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            order = ["low", "normal", "high", "low", "high", "normal"]
            for i, priority in enumerate(order):
                await client.post(f"/q/{queue}", params={"priority": priority}, json=i)
            got = []
            for _ in order:
                job = (await take(client, queue)).json()
                got.append((job["priority"], job["job"]))
                await answer(client, queue, job, "done")
    assert got == [("high", 2), ("high", 4), ("normal", 1), ("normal", 5), ("low", 0), ("low", 3)]


async def test_delayed_job_not_before_its_time(redis: RedisServer, queue: str) -> None:
    """A job posted with ?delay=1 (or ?run_at= a second ahead) is not taken before that
    second has passed, and a held take gets it when it is due."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            start = trio.current_time()
            await client.post(f"/q/{queue}", params={"delay": 1}, json="later")
            early = await take(client, queue)
            delayed = (await client.get(f"/j/{queue}")).json()["delayed"]
            job = await take(client, queue, wait=5)
            waited = trio.current_time() - start
            now = (await client.get(f"/q/{queue}/{job.json()['id']}")).json()["created"]
            await client.post(f"/q/{queue}", params={"run_at": now + 3}, json="at")
            early_at = await take(client, queue, wait=0.5)
            at = await take(client, queue, wait=5)
    assert early.status_code == 204
    assert delayed == 1
    assert job.json()["job"] == "later"
    assert waited >= 0.95  # the issue's own timing rule: never before its time
    assert early_at.status_code == 204
    assert at.json()["job"] == "at"


async def test_uniq_keeps_one_pending_job_per_key(redis: RedisServer, queue: str) -> None:
    """A second POST with the same ?uniq= while the first is pending adds nothing (200, the
    first's id); once the first is done, the key is free again."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            first = await client.post(f"/q/{queue}", params={"uniq": "mail:42"}, json=1)
            again = await client.post(f"/q/{queue}", params={"uniq": "mail:42"}, json=2)
            job = (await take(client, queue)).json()
            while_taken = await client.post(f"/q/{queue}", params={"uniq": "mail:42"}, json=3)
            await answer(client, queue, job, "done")
            after = await client.post(f"/q/{queue}", params={"uniq": "mail:42"}, json=4)
            length = (await client.get(f"/j/{queue}")).json()["length"]
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "queue": queue, "added": False}
    assert while_taken.json()["id"] == first.json()["id"]
    assert after.status_code == 201
    assert after.json()["id"] != first.json()["id"]
    assert length == 1


async def test_fail_retries_with_backoff_then_dead_letter(redis: RedisServer, queue: str) -> None:
    """A failed job comes back after its backoff with its attempt counted; past max_attempts
    it is dead, listed with its reason, and can be retried or deleted."""
    with trio.fail_after(30):
        async with queue_api(redis.url, max_attempts=2, backoff=0.3) as client:
            posted = (await client.post(f"/q/{queue}", json={"x": 1})).json()
            first = (await take(client, queue)).json()
            failed = await answer(client, queue, first, "fail", json={"reason": "boom 1"})
            at_once = await take(client, queue)
            second = (await take(client, queue, wait=5)).json()
            buried = await answer(client, queue, second, "fail", json={"reason": "boom 2"})
            dead = (await client.get(f"/dead/{queue}")).json()["dead"]
            info = (await client.get(f"/j/{queue}")).json()
            retried = await client.post(f"/dead/{queue}/{posted['id']}")
            third = (await take(client, queue)).json()
            await answer(client, queue, third, "fail", json={"reason": "boom 3"})
            fourth = (await take(client, queue, wait=5)).json()
            await answer(client, queue, fourth, "fail", content=b"plain text reason")
            deleted = await client.delete(f"/dead/{queue}/{posted['id']}")
            gone = await client.get(f"/q/{queue}/{posted['id']}")
            deleted_again = await client.delete(f"/dead/{queue}/{posted['id']}")
    assert failed.json()["outcome"] == "retry"
    assert at_once.status_code == 204
    assert (second["id"], second["attempt"]) == (posted["id"], 2)
    assert buried.json()["outcome"] == "dead"
    assert [(d["id"], d["error"], d["attempts"]) for d in dead] == [(posted["id"], "boom 2", 2)]
    assert (info["dead"], info["length"], info["pending"], info["delayed"]) == (1, 0, 0, 0)
    assert retried.status_code == 200
    assert third["attempt"] == 1
    assert deleted.status_code == 200
    assert gone.status_code == 404
    assert deleted_again.status_code == 404


async def test_release_gives_the_job_back_untried(redis: RedisServer, queue: str) -> None:
    """A released job is taken again at once, its attempt count unchanged."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            await client.post(f"/q/{queue}", json={})
            job = (await take(client, queue)).json()
            released = await answer(client, queue, job, "release")
            again = (await take(client, queue)).json()
    assert released.status_code == 200
    assert (again["id"], again["attempt"]) == (job["id"], 1)


async def test_stop_holds_jobs_back_and_start_hands_them_out(
    redis: RedisServer, queue: str
) -> None:
    """A stopped queue accepts posts but hands out nothing; start wakes a held take."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            stopped = await client.post(f"/control/{queue}", json={"status": "stop"})
            posted = await client.post(f"/q/{queue}", json={})
            nothing = await take(client, queue, wait=0.3)
            status = await client.get(f"/control/{queue}")
            got, started = await while_held(
                client, queue, client.post(f"/control/{queue}", json={"status": "start"})
            )
    assert stopped.json() == {"queue": queue, "status": "stopped"}
    assert posted.status_code == 201
    assert nothing.status_code == 204
    assert status.json()["status"] == "stopped"
    assert started.json()["status"] == "started"
    assert got.json()["id"] == posted.json()["id"]


async def test_queue_figures_and_stats(redis: RedisServer, queue: str) -> None:
    """/j/<queue> counts waiting, taken, delayed, dead jobs, held takes and the oldest job's
    age; /stats/ lists the queue with the same figures and totals."""
    with trio.fail_after(20):
        async with queue_api(redis.url, max_attempts=1) as client:
            for _ in range(3):
                await client.post(f"/q/{queue}", json={})
            await client.post(f"/q/{queue}", params={"delay": 60}, json={})
            taken = (await take(client, queue)).json()
            dead = (await take(client, queue)).json()
            await answer(client, queue, dead, "fail", json={"reason": "x"})
            await trio.sleep(0.2)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(take, client, f"{queue}w", 1.0)
                await trio.sleep(0.5)
                held = (await client.get(f"/j/{queue}w")).json()["consumers"]["waiting"]
            info = (await client.get(f"/j/{queue}")).json()
            stats = (await client.get("/stats/")).json()
    assert taken["id"]
    assert (info["length"], info["pending"], info["delayed"], info["dead"]) == (1, 1, 1, 1)
    assert info["consumers"] == {"waiting": 0, "working": 1}
    assert info["oldest_age"] >= 0.2
    assert info["counts"]["enqueued"] == 4
    assert held == 1
    mine = [q for q in stats["queues"] if q["queue"] == queue]
    assert mine[0]["length"] == 1
    assert stats["totals"]["dead"] >= 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "text"),
    [
        ("POST", "/q/bad%20name", {"json": {}}, 400, "bad queue name"),
        ("POST", "/q/-x", {"json": {}}, 400, "bad queue name"),
        ("POST", "/q/" + "x" * 65, {"json": {}}, 400, "bad queue name"),
        ("POST", "/q/ok", {"content": b'{"a": 1,}'}, 400, "line 1 column 9"),
        ("POST", "/q/ok", {"content": b"NaN"}, 400, "not JSON"),
        ("POST", "/q/ok", {"content": b"\xff"}, 400, "not UTF-8"),
        ("POST", "/q/ok", {"content": b"[" + b"1," * 40_000 + b"1]"}, 413, "over"),
        ("POST", "/q/ok?priority=urgent", {"json": {}}, 400, "priority"),
        ("POST", "/q/ok?delay=-1", {"json": {}}, 400, "delay"),
        ("GET", "/q/ok?wait=nan", {}, 400, "wait"),
        ("GET", "/q/ok?wait=1000", {}, 400, "wait"),
        ("GET", "/q/ok/0123456789abcdef01234567", {}, 404, "no job"),
        ("GET", "/q/ok/../../etc", {}, 404, ""),
        ("GET", "/q/ok/not-an-id", {}, 404, "no job"),
        ("POST", "/q/ok/0123456789abcdef01234567/done?lease=x", {}, 404, "no job"),
        ("POST", "/q/ok/0123456789abcdef01234567/done", {}, 400, "lease"),
        ("POST", "/q/ok/0123456789abcdef01234567/explode?lease=x", {}, 404, "no action"),
        ("POST", "/control/ok", {"json": {"status": "pause"}}, 400, "status"),
        ("DELETE", "/q/ok", {}, 405, ""),
        ("DELETE", "/dead/ok/0123456789abcdef01234567", {}, 404, "no dead job"),
    ],
)
async def test_bad_input_answered_clearly(
    redis: RedisServer, method: str, path: str, kwargs: dict[str, object], status: int, text: str
) -> None:
    """Bad names, bodies, options, ids and methods get their 4xx with a readable reason."""
    with trio.fail_after(20):
        async with queue_api(redis.url, max_body=64 * 1024) as client:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert text in response.text


async def test_chunked_body_over_the_limit_refused(redis: RedisServer, queue: str) -> None:
    """A body sent without a Content-Length is still cut at max_body: 413, nothing stored."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        for _ in range(36):  # 72 KB: more than the limit, less than the socket buffers
            yield b"1," * 1000
        yield b"1]"

    with trio.fail_after(20):
        async with queue_api(redis.url, max_body=64 * 1024) as client:
            response = await client.post(f"/q/{queue}", content=chunks())
            info = (await client.get(f"/j/{queue}")).json()
    assert response.status_code == 413
    assert info["length"] == 0


async def test_token_required(redis: RedisServer) -> None:
    """Without the bearer token (or with a wrong one) the API answers 401; the page and its
    static files are served to anyone, since they hold no data."""
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            none = await client.get("/j/ok", headers={"Authorization": ""})
            wrong = await client.post("/q/ok", json={}, headers={"Authorization": "Bearer no"})
            page = await client.get("/", headers={"Authorization": ""})
            script = await client.get("/queue-static/queue.js", headers={"Authorization": ""})
    assert (none.status_code, wrong.status_code) == (401, 401)
    assert "bearer token" in none.json()["error"]
    assert page.status_code == 200
    assert script.status_code == 200


async def test_foreign_data_under_fragment_job_keys_is_read_as_none(
    redis: RedisServer, queue: str
) -> None:
    """Someone else's data where a queue's fragment jobs or their dead letters go: /j/ and
    /dead/ still answer 200, counting no fragment job (and other queues are unaffected)."""
    store = redis_py.Redis.from_url(redis.url, socket_timeout=5)
    other = f"{queue}b"
    store.set(f"workerless:fragments:{queue}", "not a stream")
    store.xadd(f"workerless:fragments:{other}", {"job": "{}"})
    store.set(f"workerless:fragments:{other}:dead", "not a stream either")
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            info = await client.get(f"/j/{queue}")
            other_info = await client.get(f"/j/{other}")
            dead = await client.get(f"/dead/{other}")
    assert info.status_code == 200 and info.json()["fragments"] is None, info.text
    assert other_info.status_code == 200, other_info.text
    assert other_info.json()["fragments"]["waiting"] == 1
    assert other_info.json()["fragments"]["dead"] == 0
    assert (dead.status_code, dead.json()["dead"]) == (200, [])
