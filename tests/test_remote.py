"""Worker-computed fragments: two web servers and two `workerless worker` processes, one Redis.

The web servers (hypercorn, apps/remote_app.py) hold requests; the workers
(``workerless worker apps.remote_app:app --queue reports``) compute.  Each
computation is counted with INCR in the session Redis; each test uses fresh names.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import httpx
import pytest
import redis as redis_py
import trio
from quart_trio import QuartTrio
from servers import (
    ROOT,
    Hypercorn,
    RedisServer,
    fragment_worker,
    hypercorn,
    redis_server,
    serve_in_process,
)

from workerless import ConfigurationError, Workerless
from workerless._redis_keys import KeyLayout
from workerless._remote import FragmentJob
from workerless._remote_scripts import TRIM

pytestmark = pytest.mark.redis

APP = "apps.remote_app:app"
LAYOUT = KeyLayout("workerless:")  # where the Redis store keeps each key's value
SETTINGS = {"WORKERLESS_LEASE": "2", "WORKERLESS_DEADLINE": "30", "REMOTE_SLEEP": "1"}


def worker(
    redis_url: str, log_dir: Path, *queues: str, args: tuple[str, ...] = ()
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A fragment worker for ``queues`` with short job leases and retries."""
    env = {"WORKERLESS_STORE": redis_url, "REMOTE_COUNTER_URL": redis_url, **SETTINGS}
    args = ("--job-lease", "2", "--backoff", "0.1", *args)
    return fragment_worker(APP, log_dir, queues, env=env, args=args)


@pytest.fixture(scope="module")
def cluster(
    redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Hypercorn], Path]]:
    """Two web servers and two workers (queue ``reports``) on the session Redis."""
    log_dir = tmp_path_factory.mktemp("remote")
    env = {"WORKERLESS_STORE": redis.url, "REMOTE_COUNTER_URL": redis.url, **SETTINGS}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(hypercorn(APP, log_dir, env=env, args=("--backlog", "1024")))
            for _ in range(2)
        ]
        for _ in range(2):
            stack.enter_context(worker(redis.url, log_dir, "reports", args=("--concurrency", "4")))
        yield servers, log_dir


@pytest.fixture
def counter(redis: RedisServer) -> redis_py.Redis:
    return redis_py.Redis.from_url(redis.url, socket_timeout=5)


def computations(counter: redis_py.Redis, name: str) -> int:
    return int(counter.get(f"remote:computations:{name}") or 0)


def jobs_for(counter: redis_py.Redis, queue: str, key: str) -> list[dict[str, object]]:
    """Every job added to ``queue`` for ``key`` (acknowledged ones stay 10 minutes)."""
    entries = counter.xrange(f"workerless:fragments:{queue}")
    jobs = [json.loads(fields[b"job"]) for _, fields in entries]
    return [job for job in jobs if job.get("key") == key]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def hold(nursery: trio.Nursery, client: httpx.AsyncClient, url: str) -> list[httpx.Response]:
    """Send a GET in the background; its response lands in the returned list."""
    result: list[httpx.Response] = []

    async def get() -> None:
        result.append(await client.get(url))

    nursery.start_soon(get)
    return result


async def until(predicate: Callable[[], object]) -> None:
    """Return once ``predicate()`` is true (callers bound it with trio.fail_after)."""
    while not predicate():  # noqa: ASYNC110 - the state is in other processes: poll it
        await trio.sleep(0.02)


async def test_one_job_for_500_concurrent_requests(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """500 concurrent requests for one cold worker-computed key on two web servers: one job, one
    computation on a worker, and every request answered by push with its result."""
    servers, _ = cluster
    name = uuid.uuid4().hex
    path = f"/heavy/{name}?gate=1"
    statuses: list[tuple[int, str, int]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    with trio.fail_after(90):
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one(index: int) -> None:
                response = await client.get(servers[index % 2].url + path)
                body = response.json() if response.status_code == 200 else {}
                cache_status = response.headers["Cache-Status"]
                statuses.append((response.status_code, cache_status, body.get("computation")))

            async def open_gate() -> None:
                # Every request reached a server before the computation may end.
                await until(lambda: int(counter.get(f"remote:arrived:{name}") or 0) >= 500)
                counter.set(f"remote:gate:{name}", 1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(open_gate)
                for index in range(500):
                    nursery.start_soon(one, index)
    assert len(statuses) == 500
    assert {status for status, _, _ in statuses} == {200}
    assert {number for _, _, number in statuses} == {1}
    assert all("fwd=miss" in cache_status for _, cache_status, _ in statuses)
    assert computations(counter, name) == 1
    assert len(jobs_for(counter, "reports", f"/heavy/{name}?gate=1")) == 1


async def test_job_carries_only_the_headers_the_key_depends_on(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """The job carries the route's declared headers and never Cookie or Authorization; the view
    on the worker reads the declared one."""
    servers, _ = cluster
    language = f"fr-{uuid.uuid4().hex[:8]}"
    headers = {"Accept-Language": language, "Cookie": "session=secret"}
    with trio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as client:
            response = await client.get(servers[0].url + "/greeting", headers=headers)
    assert response.status_code == 200
    assert response.json()["language"] == language
    assert response.json()["cookie"] is None
    entries = counter.xrange("workerless:fragments:reports")
    jobs = [json.loads(fields[b"job"]) for _, fields in entries]
    [job] = [job for job in jobs if ["accept-language", language] in job["headers"]]
    assert job["headers"] == [["accept-language", language]]
    assert job["method"] == "GET" and job["url"] == "/greeting"


async def test_failing_job_answers_502_to_every_waiter_and_is_dead_lettered(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """A job whose view raises: 502 to every waiter on both servers, nothing cached, retried up
    to the limit (3 runs), then in the dead-letter stream, listed by the queue service's
    /j/<queue> and /dead/<queue> (deletable, not retried)."""
    servers, _ = cluster
    name = uuid.uuid4().hex
    with trio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as client:
            statuses: list[int] = []

            async def one(index: int) -> None:
                response = await client.get(f"{servers[index % 2].url}/failing/{name}")
                statuses.append(response.status_code)

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(one, index)
    assert statuses == [502] * 20
    wait_until(lambda: computations(counter, name) >= 3, 20, "three runs")
    key = f"/failing/{name}"
    wait_until(
        lambda: any(
            json.loads(fields[b"job"])["job"]["key"] == key
            for _, fields in counter.xrange("workerless:fragments:reports:dead")
        ),
        10,
        "the job in the dead-letter stream",
    )
    dead = [
        json.loads(fields[b"job"])
        for _, fields in counter.xrange("workerless:fragments:reports:dead")
    ]
    [record] = [record for record in dead if record["job"]["key"] == key]
    assert "RuntimeError" in record["reason"]
    assert counter.get(LAYOUT.value(key)) is None
    assert computations(counter, name) == 3
    with trio.fail_after(20):
        async with httpx.AsyncClient(timeout=10) as client:
            auth = {"Authorization": "Bearer test-token"}
            info = (await client.get(f"{servers[1].url}/queues/j/reports", headers=auth)).json()
            url = f"{servers[0].url}/queues/dead/reports"
            listed = (await client.get(url, headers=auth)).json()["dead"]
            [shown] = [job for job in listed if json.loads(job["job"]).get("key") == key]
            retry = await client.post(f"{url}/{shown['id']}", headers=auth)
            deleted = await client.delete(f"{url}/{shown['id']}", headers=auth)
            again = await client.delete(f"{url}/{shown['id']}", headers=auth)
    assert info["fragments"]["dead"] >= 1 and info["dead"] >= info["fragments"]["dead"], info
    assert (shown["kind"], shown["attempts"]) == ("fragment", 3), shown
    assert "RuntimeError" in shown["error"]
    assert retry.status_code == 409, retry.text
    assert (deleted.status_code, again.status_code) == (200, 404), deleted.text


async def test_web_process_stays_responsive_while_a_worker_burns_cpu(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """While a CPU-bound fragment computes on a worker, a bare route of the web process answers
    in under 50 ms (median of 20), and the fragment arrives by push."""
    servers, _ = cluster
    name = uuid.uuid4().hex
    timings: list[float] = []
    with trio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as client, trio.open_nursery() as nursery:
            result = hold(nursery, client, f"{servers[0].url}/cpu/{name}")
            await until(lambda: computations(counter, name) > 0)
            for _ in range(20):
                started = time.perf_counter()
                bare = await client.get(f"{servers[0].url}/bare")
                timings.append(time.perf_counter() - started)
                assert bare.status_code == 200
            assert not result, "the fragment must still be computing while timed"
    assert result[0].status_code == 200
    assert result[0].json()["pid"] not in (server.proc.pid for server in servers)
    assert statistics.median(timings) < 0.050, timings


async def test_no_worker_holds_the_lease_for_the_one_job_until_one_starts(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis, redis: RedisServer
) -> None:
    """With no worker on its queue, requests get 202 past their deadline, the key's lease
    stays held (no computation in the web process, no second job) and the queue service's
    /j/<queue> and /stats/ show the waiting job; a worker started later runs the one job,
    and the next request gets its result."""
    servers, log_dir = cluster
    name = uuid.uuid4().hex
    key = f"/idle/{name}"
    with trio.fail_after(40):
        async with httpx.AsyncClient(timeout=20) as client:
            for server in (*servers, *servers):
                response = await client.get(server.url + key)
                assert response.status_code == 202
                await trio.sleep(1)  # the 2 s lease lapses at least once between requests
            assert computations(counter, name) == 0
            assert len(jobs_for(counter, "idle", key)) == 1
            auth = {"Authorization": "Bearer test-token"}
            info = (await client.get(f"{servers[0].url}/queues/j/idle", headers=auth)).json()
            stats = (await client.get(f"{servers[1].url}/queues/stats/", headers=auth)).json()
            with worker(redis.url, log_dir, "idle"):
                wait_until(lambda: counter.get(LAYOUT.value(key)) is not None, 15, "stored")
                response = await client.get(servers[1].url + key)
    assert response.status_code == 200
    assert response.json()["computation"] == 1
    assert computations(counter, name) == 1
    assert len(jobs_for(counter, "idle", key)) == 1
    # Meanwhile the queue service showed the waiting job, on /j/<queue> and /stats/.
    assert info["length"] >= 1 and info["fragments"]["waiting"] >= 1, info
    assert info["oldest_age"] >= 1, info
    [idle] = [queue for queue in stats["queues"] if queue["queue"] == "idle"]
    assert idle["fragments"]["waiting"] >= 1, stats


async def test_worker_killed_mid_job_is_redelivered_and_stored_once(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis, redis: RedisServer
) -> None:
    """A worker SIGKILLed mid-job: another worker takes the job over after its lease, re-enters
    the key's lease, and the held request gets that one stored result."""
    servers, log_dir = cluster
    name = uuid.uuid4().hex
    key = f"/slow/{name}"
    with trio.fail_after(60):
        async with httpx.AsyncClient(timeout=40) as client:
            async with trio.open_nursery() as nursery:
                with worker(redis.url, log_dir, "kill") as doomed:
                    result = hold(nursery, client, servers[0].url + key)
                    await until(lambda: computations(counter, name) > 0)
                    doomed.kill()
                    doomed.wait(5)
                with worker(redis.url, log_dir, "kill"):
                    await until(lambda: result)
            second = await client.get(servers[1].url + key)
    assert result[0].status_code == 200
    assert result[0].json()["computation"] == 2
    assert second.json() == result[0].json()
    assert "hit" in second.headers["Cache-Status"]
    assert computations(counter, name) == 2
    assert len(jobs_for(counter, "kill", key)) == 1


async def test_garbage_in_the_queue_is_dead_lettered_and_the_worker_goes_on(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """An entry that is not a fragment job is dead-lettered with the reason; workers keep
    computing."""
    servers, _ = cluster
    marker = uuid.uuid4().hex
    counter.xadd("workerless:fragments:reports", {"job": f'{{"not": "{marker}"'})
    wait_until(
        lambda: any(
            marker in fields[b"job"].decode()
            for _, fields in counter.xrange("workerless:fragments:reports:dead")
        ),
        10,
        "the garbage dead-lettered",
    )
    with trio.fail_after(20):
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.get(f"{servers[1].url}/heavy/{marker}")
    assert response.status_code == 200


def test_job_decoding_refuses_what_is_not_a_job() -> None:
    """FragmentJob.decode names what is wrong with an entry, and reads back what encode wrote."""
    job = FragmentJob("/k", "a" * 32, "heavy", {"name": "x"}, "GET", "/k", "", [("a", "b")], [])
    assert FragmentJob.decode(job.encode()).key == "/k"
    for raw, problem in (
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"key": "k"}', "missing"),
        (job.encode().replace('"GET"', "1"), "strings"),
        (job.encode().replace('[["a","b"]]', '[["a"]]'), "pairs"),
    ):
        with pytest.raises(ValueError, match=problem):
            FragmentJob.decode(raw)


async def test_worker_route_answers_503_while_redis_is_down() -> None:
    """A compute="worker" route with its Redis gone answers 503 (no fallback into the web
    process), and a bare route still answers."""
    app = QuartTrio(__name__)
    with redis_server() as server:
        workerless = Workerless(app, store=server.url, deadline=5)

        @workerless.fragment("/report/<name>", compute="worker", queue="reports")
        async def report(name: str) -> str:
            raise AssertionError("never computed in the web process")

        @app.get("/bare")
        async def bare() -> str:
            return "ok"

        with trio.fail_after(30):
            async with serve_in_process(app) as url, httpx.AsyncClient(timeout=10) as client:
                server.stop()
                response = await client.get(f"{url}/report/a")
                assert response.status_code == 503
                assert "store-down" in response.headers["Cache-Status"]
                assert (await client.get(f"{url}/bare")).text == "ok"


def test_readme_snippet_is_the_tested_route() -> None:
    """The README's worker-computed route is, word for word, the one these tests run."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Worker-computed fragments\n", 1)[1].split("\n## ", 1)[0]
    [snippet] = re.findall(r"```python\n(.*?)```", section, re.S)
    assert snippet in (ROOT / "tests" / "apps" / "remote_app.py").read_text()


async def test_sigterm_gives_the_running_job_back(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis, redis: RedisServer
) -> None:
    """SIGTERM mid-job: the worker exits 0 after its grace period, the job goes back to the
    queue, and the next worker's result reaches the request held all along."""
    servers, log_dir = cluster
    name = uuid.uuid4().hex
    key = f"/slow/{name}?gate=1"
    env = {
        "WORKERLESS_STORE": redis.url,
        "REMOTE_COUNTER_URL": redis.url,
        **SETTINGS,
        "WORKERLESS_GRACE": "0.5",
    }
    with trio.fail_after(60):
        async with httpx.AsyncClient(timeout=40) as client, trio.open_nursery() as nursery:
            with fragment_worker(APP, log_dir, ["kill"], env=env) as stopping:
                result = hold(nursery, client, servers[0].url + key)
                await until(lambda: computations(counter, name) > 0)
                stopping.terminate()
                await until(lambda: stopping.poll() is not None)
            counter.set(f"remote:gate:{name}", 1)
            with worker(redis.url, log_dir, "kill"):
                await until(lambda: result)
    logs = "\n".join(path.read_text()[-1500:] for path in sorted(log_dir.glob("worker-*.log")))
    assert stopping.returncode == 0, logs
    assert result[0].status_code == 200, logs
    assert result[0].json()["computation"] == 2, logs
    given_back = jobs_for(counter, "kill", f"/slow/{name}?gate=1")
    assert len(given_back) == 2, logs  # the job, and the same job given back


async def test_a_worker_speaking_http_computes_a_fragment(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """A worker using only HTTP takes the job (with its URL), is refused a result that would
    not be stored (CR/LF in a header: 400) or without the token (401), then posts status,
    headers and body: the request held on the other server gets exactly that."""
    servers, _ = cluster
    name = uuid.uuid4().hex
    api = servers[1].url + "/fragment-jobs/external"
    auth = {"Authorization": "Bearer test-token"}
    with trio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as client, trio.open_nursery() as nursery:
            result = hold(nursery, client, f"{servers[0].url}/external/{name}")
            assert (await client.get(api, params={"wait": 1})).status_code == 401
            taken = await client.get(api, params={"wait": 10}, headers=auth)
            while taken.status_code == 204 or taken.json()["job"]["url"] != f"/external/{name}":
                taken = await client.get(api, params={"wait": 10}, headers=auth)
            entry = taken.json()["id"]
            bad = {"status": 200, "headers": [["X-Bad", "a\r\nSet-Cookie: x=1"]], "body": "no"}
            refused = await client.post(f"{api}/{entry}/result", json=bad, headers=auth)
            assert refused.status_code == 400, refused.text
            good = {"status": 200, "headers": [["Content-Type", "text/html"]], "body": "<p>hi</p>"}
            posted = await client.post(f"{api}/{entry}/result", json=good, headers=auth)
            assert posted.status_code == 204, posted.text
            await until(lambda: result)
            info = await client.get(f"{servers[0].url}/queues/j/external", headers=auth)
    assert result[0].status_code == 200
    assert result[0].text == "<p>hi</p>"
    assert result[0].headers["Content-Type"] == "text/html"
    assert info.json()["fragments"]["pending"] == 0


async def test_demo_heavy_card_is_computed_by_a_worker(redis: RedisServer, tmp_path: Path) -> None:
    """The demo run with Redis and a fragment worker on queue demo: the heavy card is computed
    on the worker process and pushed to the held request, and streamed in /streamed."""
    env = {"WORKERLESS_STORE": redis.url, "WORKERLESS_DEMO_HEAVY_SECONDS": "0.2"}
    redis_py.Redis.from_url(redis.url).delete(LAYOUT.value("/heavy"))
    with (
        hypercorn("workerless.demo:app", tmp_path, env=env) as server,
        fragment_worker("workerless.demo:app", tmp_path, ["demo"], env=env) as proc,
        trio.fail_after(30),
    ):
        async with httpx.AsyncClient(timeout=20) as client:
            page = await client.get(server.url + "/")
            response = await client.get(server.url + "/heavy")
            streamed = await client.get(server.url + "/streamed")
    assert 'data-fragment="/heavy"' in page.text
    assert response.status_code == 200
    assert f"rounds on process {proc.pid} (a worker)" in response.text
    # The streamed page's copy of the card comes from the same worker-computed fragment.
    assert f"rounds on process {proc.pid} (a worker)" in streamed.text


async def test_readme_curl_worker_computes_a_fragment(
    cluster: tuple[list[Hypercorn], Path],
) -> None:
    """The README's curl and jq worker, run as written by bash, answers a held request."""
    servers, _ = cluster
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Worker-computed fragments\n", 1)[1].split("\n## ", 1)[0]
    [script] = [block for block in re.findall(r"```sh\n(.*?)```", section, re.S) if "jq" in block]
    name = uuid.uuid4().hex
    env = {"WEB": servers[1].url, "TOKEN": "test-token", "PATH": os.environ["PATH"]}
    script = script.replace("/fragment-jobs/reports", "/fragment-jobs/external")
    with trio.fail_after(40):
        async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
            result = hold(nursery, client, f"{servers[0].url}/external/{name}")
            done = await trio.run_process(
                ["bash", "-euo", "pipefail", "-c", script],
                env=env,
                capture_stderr=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            await until(lambda: result)
    assert result[0].status_code == 200
    assert result[0].text == f"computed for /external/{name}\n"


def test_bad_worker_options_are_refused_where_written() -> None:
    """compute= other than here/worker and a malformed queue name fail at registration,
    naming the argument and the route."""
    workerless = Workerless(QuartTrio(__name__))
    with pytest.raises(ValueError, match=r"compute= of fragment '/a'"):
        workerless.fragment("/a", compute="elsewhere")
    with pytest.raises(ValueError, match=r"queue= of fragment '/b'"):
        workerless.fragment("/b", compute="worker", queue="no spaces")


async def test_worker_route_without_redis_refuses_to_start() -> None:
    """compute="worker" with the memory store stops start-up with a message naming Redis."""
    app = QuartTrio(__name__)
    workerless = Workerless(app, store="memory://")

    @workerless.fragment("/report", compute="worker", queue="reports")
    async def report() -> str:
        return "never"

    with trio.fail_after(10), pytest.raises(ConfigurationError, match="needs a Redis store"):
        await app.startup()


async def test_stale_worker_fragment_is_served_at_once_while_a_worker_refreshes_it(
    cluster: tuple[list[Hypercorn], Path], counter: redis_py.Redis
) -> None:
    """Past its ttl, a worker-computed fragment with stale= is answered at once from the old
    response while one job recomputes it; the next requests get the new one."""
    servers, _ = cluster
    name = uuid.uuid4().hex
    url = f"{servers[0].url}/fresh/{name}"
    with trio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as client:
            first = await client.get(url)
            await trio.sleep(1.2)  # the 1 s ttl has passed
            stale = await client.get(url)
            await until(lambda: computations(counter, name) == 2)
            while (await client.get(url)).json()["computation"] != 2:  # noqa: ASYNC110
                await trio.sleep(0.1)  # stored by the worker, then read by the web process
    assert first.json()["computation"] == 1
    assert stale.status_code == 200
    assert stale.json()["computation"] == 1
    assert "stale" in stale.headers["Cache-Status"]
    assert computations(counter, name) == 2


def test_finished_jobs_leave_the_stream_but_pending_and_unread_ones_stay(
    counter: redis_py.Redis,
) -> None:
    """The trim the finish and retry scripts run drops acknowledged entries older than the
    time kept, never one taken and not acknowledged nor one no worker has read yet."""
    stream, group = f"trim-{uuid.uuid4().hex}", "workerless"
    counter.xgroup_create(stream, group, id="0", mkstream=True)
    done_id, taken_id, acked_after_id, unread_id = (
        counter.xadd(stream, {"job": str(n)}) for n in range(4)
    )
    counter.xreadgroup(group, "w", {stream: ">"}, count=3)
    counter.xack(stream, group, done_id, acked_after_id)
    trim = counter.register_script(TRIM)
    time.sleep(0.01)  # every entry is now older than "keep 0 ms"
    assert trim(keys=[stream], args=[group, 0]) == 3  # only done_id, older than the pending one
    remaining = [entry for entry, _ in counter.xrange(stream)]
    assert remaining == [taken_id, acked_after_id, unread_id]
    counter.xack(stream, group, taken_id)
    # All read and acknowledged: gone, but the last one read (the group's position).
    assert trim(keys=[stream], args=[group, 0]) == 2
    assert [entry for entry, _ in counter.xrange(stream)] == [acked_after_id, unread_id]
    counter.xreadgroup(group, "w", {stream: ">"}, count=1)
    counter.xack(stream, group, unread_id)
    assert trim(keys=[stream], args=[group, 60_000]) == 2  # kept: younger than a minute
    counter.delete(stream)
