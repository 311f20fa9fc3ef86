"""A fleet of separate hypercorn servers on one Redis: one computation per key, faults survived.

Each server is its own ``hypercorn --worker-class trio`` process running apps/fleet_app.py
(a SIGKILLed worker stops a whole multi-worker server, so a fleet is several servers).  Each
computation is counted with INCR in the session Redis.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx
import pytest
import redis as redis_py
import trio
from servers import Hypercorn, RedisServer, hypercorn, redis_server

pytestmark = pytest.mark.redis

APP = "apps.fleet_app:app"


def start_servers(
    stack: ExitStack,
    log_dir: Path,
    sleeps: list[float],
    *,
    store_url: str,
    counter_url: str,
    **settings: str,
) -> list[Hypercorn]:
    """One server per entry of ``sleeps`` (its computation time), started side by side."""
    managers = [
        hypercorn(
            APP,
            log_dir,
            env={
                "WORKERLESS_STORE": store_url,
                "FLEET_COUNTER_URL": counter_url,
                "FLEET_SLEEP": str(sleep),
                **settings,
            },
            args=("--backlog", "1024"),
        )
        for sleep in sleeps
    ]
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager.__exit__)
    return [future.result() for future in futures]


@pytest.fixture(scope="module")
def fleet(
    redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Hypercorn]]:
    """Three servers sharing the session Redis; each computation takes 1 s, leases 30 s."""
    with ExitStack() as stack:
        yield start_servers(
            stack, tmp_path_factory.mktemp("fleet"), [1, 1, 1],
            store_url=redis.url, counter_url=redis.url, WORKERLESS_LEASE="30",
        )


@pytest.fixture
def counter(redis: RedisServer) -> redis_py.Redis:
    return redis_py.Redis.from_url(redis.url)


def computations(counter: redis_py.Redis, name: str) -> int:
    return int(counter.get(f"fleet:computations:{name}") or 0)


async def started_computing(counter: redis_py.Redis, name: str) -> None:
    """Return once a computation of fragment ``name`` has started somewhere in the fleet."""
    while computations(counter, name) == 0:  # noqa: ASYNC110 (another process: no trio.Event)
        await trio.sleep(0.05)


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def client() -> httpx.AsyncClient:
    unbounded = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(timeout=30, limits=unbounded)


def computation(response: httpx.Response) -> int:
    return int(json.loads(response.content)["computation"])


async def test_one_computation_for_400_concurrent_requests_across_servers(
    fleet: list[Hypercorn], counter: redis_py.Redis
) -> None:
    """400 concurrent requests for one cold key, spread over three servers, all get the same
    200 body, and the fragment is computed exactly once in the whole fleet."""
    name = unique("cold")
    responses: list[tuple[int, httpx.Response]] = []

    async def get(http: httpx.AsyncClient, server: int) -> None:
        responses.append((server, await http.get(f"{fleet[server].url}/fragment/{name}")))

    with trio.fail_after(60):
        started = trio.current_time()
        # Several clients: one httpx pool slows down sharply past a hundred connections.
        async with AsyncExitStack() as stack:
            https = [await stack.enter_async_context(client()) for _ in range(20)]
            async with trio.open_nursery() as nursery:
                for n in range(400):
                    nursery.start_soon(get, https[n % 20], n % 3)
        elapsed = trio.current_time() - started
    assert len(responses) == 400
    assert {r.status_code for _, r in responses} == {200}
    assert len({r.content for _, r in responses}) == 1
    assert computation(responses[0][1]) == 1
    assert computations(counter, name) == 1
    # Every server had requests waiting on the one computation (whichever server ran it), and
    # they were woken by its notice: the fallback re-check comes only after the 30 s lease.
    for server in range(3):
        assert any(s == server and "fwd=miss" in r.headers["Cache-Status"] for s, r in responses)
    assert elapsed < 30  # the lease fallback could not have answered before 30 s


async def recomputed(http: httpx.AsyncClient, url: str, expected: int) -> httpx.Response:
    """GET ``url`` until it shows computation ``expected``; before that only the one before.

    An invalidation reaches other servers' near caches by pub/sub, within milliseconds.
    """
    while True:
        response = await http.get(url)
        if computation(response) == expected:
            return response
        assert computation(response) == expected - 1
        await trio.sleep(0.01)


async def test_invalidation_on_one_server_is_seen_by_the_others(
    fleet: list[Hypercorn], counter: redis_py.Redis
) -> None:
    """invalidate(url) on one server makes another compute again (once the announcement
    arrives, in milliseconds), and invalidate_prefix works across servers too."""
    name = unique("inv")
    path = f"/fragment/{name}"
    with trio.fail_after(30):
        async with client() as http:
            first = await http.get(fleet[0].url + path)
            hit = await http.get(fleet[1].url + path)
            assert "hit" in hit.headers["Cache-Status"]
            assert hit.content == first.content

            dropped = await http.post(f"{fleet[0].url}/admin/invalidate", params={"url": path})
            assert dropped.json() == {"removed": True}
            again = await recomputed(http, fleet[1].url + path, 2)
            assert "fwd=miss" in again.headers["Cache-Status"]
            hit = await http.get(fleet[2].url + path)
            assert "hit" in hit.headers["Cache-Status"] and computation(hit) == 2

            dropped = await http.post(
                f"{fleet[2].url}/admin/invalidate", params={"prefix": path[:-3]}
            )
            assert dropped.json() == {"removed": 1}
            last = await recomputed(http, fleet[0].url + path, 3)
            assert "fwd=miss" in last.headers["Cache-Status"]
    assert computations(counter, name) == 3


async def test_killed_lease_holder_is_taken_over_once_its_lease_expires(
    redis: RedisServer, counter: redis_py.Redis, tmp_path: Path
) -> None:
    """The server computing a key is SIGKILLed mid-computation: a request on another server
    is answered 200 once the dead server's 2 s lease expires, by one new computation."""
    name = unique("orphan")
    path = f"/fragment/{name}"
    with ExitStack() as stack:
        holder, heir = start_servers(
            stack, tmp_path, [60, 0.2], store_url=redis.url, counter_url=redis.url,
            WORKERLESS_LEASE="2",
        )
        with trio.fail_after(30):
            async with client() as http, trio.open_nursery() as nursery:

                async def doomed() -> None:
                    with pytest.raises(httpx.TransportError):
                        await http.get(holder.url + path)

                nursery.start_soon(doomed)
                await started_computing(counter, name)  # so the holder has the lease
                holder.kill()
                killed = trio.current_time()
                response = await http.get(heir.url + path)
                waited = trio.current_time() - killed
    assert response.status_code == 200
    assert computation(response) == 2
    assert computations(counter, name) == 2
    # Not taken over while the dead server's lease (2 s, renewed every 2/3 s) still ran.
    assert waited > 1


async def test_requests_are_served_while_redis_is_down_and_caching_resumes_after(
    redis: RedisServer, counter: redis_py.Redis, tmp_path: Path
) -> None:
    """redis-server stopped mid-run: every request is still answered 200 (computed locally,
    Cache-Status detail=store-unavailable, warned once per server); once it is started again
    on the same port, values are cached and shared again with no restart."""
    responses: list[tuple[float, httpx.Response]] = []
    with redis_server() as store_redis, ExitStack() as stack:
        servers = start_servers(
            stack, tmp_path, [0.1, 0.1], store_url=store_redis.url, counter_url=redis.url,
            WORKERLESS_LEASE="2",
        )
        with trio.fail_after(60):
            async with client() as http:
                warm = unique("warm")
                await http.get(f"{servers[0].url}/fragment/{warm}")
                hit = await http.get(f"{servers[1].url}/fragment/{warm}")
                assert "hit" in hit.headers["Cache-Status"]

                async def request(url: str) -> None:
                    sent = trio.current_time()
                    responses.append((sent, await http.get(url)))

                async with trio.open_nursery() as nursery:
                    stopped = started = float("inf")
                    for n in range(60):  # a request every 50 ms through stop and start
                        server = servers[n % 2]
                        name = warm if n % 3 == 0 else unique("during")
                        nursery.start_soon(request, f"{server.url}/fragment/{name}")
                        await trio.sleep(0.05)
                        if n == 10:
                            await trio.to_thread.run_sync(store_redis.stop)
                            stopped = trio.current_time()
                        elif n == 40:
                            started = trio.current_time()
                            await trio.to_thread.run_sync(store_redis.start)

                # A Cacher tries a store that went down again once a second: give it a few.
                fresh = f"/fragment/{unique('after')}"
                with trio.move_on_after(5):
                    while True:
                        first = await http.get(servers[0].url + fresh)
                        second = await http.get(servers[1].url + fresh)
                        if "hit" in second.headers["Cache-Status"]:
                            break
                        await trio.sleep(0.2)
    assert [r.status_code for _, r in responses] == [200] * 60
    while_down = [r for sent, r in responses if stopped < sent < started - 0.5]
    assert while_down
    for r in while_down:
        assert "detail=store-unavailable" in r.headers["Cache-Status"]
    assert "hit" in second.headers["Cache-Status"]
    assert first.content == second.content
    for server in servers:
        assert server.log.read_text().count("serving without it") == 1


async def test_waiter_takes_over_when_the_dead_holders_lease_ends(
    redis: RedisServer, counter: redis_py.Redis, tmp_path: Path
) -> None:
    """A request already waiting on another server's computation takes over within about
    half a second of the dead holder's lease ending (lease 3 s), not on its own timer."""
    name = unique("heir")
    path = f"/fragment/{name}"
    with ExitStack() as stack:
        holder, heir = start_servers(
            stack, tmp_path, [60, 0.2], store_url=redis.url, counter_url=redis.url,
            WORKERLESS_LEASE="3",
        )
        with trio.fail_after(30):
            async with client() as http, trio.open_nursery() as nursery:
                answer: list[httpx.Response] = []
                answered = trio.Event()

                async def doomed() -> None:
                    with pytest.raises(httpx.TransportError):
                        await http.get(holder.url + path)

                async def waiter() -> None:
                    answer.append(await http.get(heir.url + path))
                    answered.set()

                nursery.start_soon(doomed)
                await started_computing(counter, name)
                nursery.start_soon(waiter)  # waits on the holder's lease from now on
                await trio.sleep(2.2)  # past the holder's second renewal
                holder.kill()
                killed = trio.current_time()
                await answered.wait()
                waited = trio.current_time() - killed
    assert answer[0].status_code == 200
    assert computations(counter, name) == 2
    # The lease ran at most 3 s past the kill; waking on a timer of its own took up to 4.1 s.
    assert waited < 3 + 0.5 + 0.2


async def test_waiters_on_another_server_fall_back_at_once_when_redis_dies(
    redis: RedisServer, counter: redis_py.Redis, tmp_path: Path
) -> None:
    """Servers A and B on one Redis; B waits on A's 3 s computation; redis-server is
    SIGKILLed: B computes the fragment itself at once instead of waiting out A's lease."""
    name = unique("orphaned-waiter")
    path = f"/fragment/{name}"
    answers: dict[str, float] = {}
    with redis_server() as store_redis, ExitStack() as stack:
        a, b = start_servers(
            stack, tmp_path, [3, 3], store_url=store_redis.url, counter_url=redis.url,
            WORKERLESS_LEASE="15",
        )
        with trio.fail_after(30):
            async with client() as http, trio.open_nursery() as nursery:
                start = trio.current_time()

                async def get(server: Hypercorn, label: str) -> None:
                    response = await http.get(server.url + path)
                    assert response.status_code == 200
                    answers[label] = trio.current_time() - start

                nursery.start_soon(get, a, "a")
                await started_computing(counter, name)
                await trio.sleep(0.5)
                nursery.start_soon(get, b, "b")
                await trio.sleep(0.5)
                assert store_redis.proc is not None
                store_redis.proc.kill()
    # B started its own 3 s computation when Redis died (~1 s in), not after the 15 s lease.
    assert answers["b"] < 1 + 3 + 3
    assert computations(counter, name) == 2


async def test_stale_answers_at_once_and_one_refresh_across_servers(
    redis: RedisServer, counter: redis_py.Redis, tmp_path: Path
) -> None:
    """After the ttl, inside the stale window: 40 concurrent requests over two servers all get
    the old fragment at once, and exactly one refresh runs in the whole fleet."""
    name = unique("stale")
    path = f"/fragment/{name}"
    with ExitStack() as stack:
        servers = start_servers(
            stack, tmp_path, [1, 1], store_url=redis.url, counter_url=redis.url,
            WORKERLESS_TTL="1", WORKERLESS_STALE="60", WORKERLESS_EARLY_REFRESH="0",
            WORKERLESS_NEAR_TTL="0",
        )
        with trio.fail_after(30):
            async with client() as http:
                first = await http.get(servers[0].url + path)
                await trio.sleep(1.2)
                responses: list[httpx.Response] = []

                async def get(server: Hypercorn) -> None:
                    responses.append(await http.get(server.url + path))

                started = trio.current_time()
                async with trio.open_nursery() as nursery:
                    for n in range(40):
                        nursery.start_soon(get, servers[n % 2])
                answered_in = trio.current_time() - started
                await trio.sleep(1.5)  # the refresh takes 1 s
                fresh = await http.get(servers[1].url + path)
    assert {r.content for r in responses} == {first.content}
    assert all("fwd=stale" in r.headers["Cache-Status"] for r in responses)
    assert answered_in < 1  # nobody waited for the 1 s refresh
    assert computations(counter, name) == 2
    assert computation(fresh) == 2
