"""The HTTP contract of fragment routes and of WorkerlessMiddleware (the same routes on a
Starlette app), against a real hypercorn, for every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import h11
import httpx
import pytest
import trio
from apps import contract_app, contract_asgi
from apps.contract_app import Probe
from servers import serve_in_process

from workerless import Workerless, WorkerlessMiddleware
from workerless.testing import capture_events

LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=500)


@dataclass
class Served:
    url: str
    client: httpx.AsyncClient
    workerless: Workerless | WorkerlessMiddleware
    probe: Probe


@pytest.fixture(params=["fragment", "middleware"])
async def served(request: pytest.FixtureRequest, store_url: str) -> AsyncIterator[Served]:
    """The contract app served by fragment routes, then by the middleware, on each store."""
    make_app = contract_app.make_app if request.param == "fragment" else contract_asgi.make_app
    app, workerless, probe = make_app(store=store_url, hard_limit=10.0, deadline=5.0, lease=3.0)
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, limits=LIMITS, timeout=30) as client,
    ):
        yield Served(url, client, workerless, probe)


async def concurrent_gets(client: httpx.AsyncClient, path: str, n: int) -> list[httpx.Response]:
    """``n`` GETs of ``path`` sent at once; their responses in arrival order."""
    responses: list[httpx.Response] = []

    async def one() -> None:
        responses.append(await client.get(path))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return responses


async def test_miss_then_hit(served: Served) -> None:
    """A miss computes and stores; the next request is a hit with the same body, no recompute."""
    with trio.fail_after(10):
        first = await served.client.get("/quick/a")
        second = await served.client.get("/quick/a")
    assert first.status_code == second.status_code == 200
    assert first.text == second.text == "quick a #1"
    assert first.headers["cache-status"] == "workerless; fwd=miss; stored"
    assert second.headers["cache-status"].startswith("workerless; hit; ttl=")
    assert served.probe.computations["quick/a"] == 1


async def test_events_hit_and_miss(served: Served) -> None:
    """The Cacher emits miss and stored on the first request, hit on the second."""
    with capture_events(served.workerless) as events, trio.fail_after(10):
        await served.client.get("/quick/events")
        await served.client.get("/quick/events")
    assert [type(e).__name__ for e in events] == ["Miss", "Stored", "Hit"]
    assert {e.key for e in events} == {"/quick/events"}


async def test_cached_response_keeps_status_headers_body(served: Served) -> None:
    """What a hit returns is the computed status, headers and body; Set-Cookie is never kept."""
    with trio.fail_after(10):
        first = await served.client.get("/cookie")
        second = await served.client.get("/cookie")
    assert "set-cookie" not in first.headers  # a per-client header is never shared
    assert second.headers["cache-status"].startswith("workerless; hit")
    assert second.headers["x-kept"] == "yes"
    assert second.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in second.headers
    assert second.text == "with cookie"


async def test_deadline_gives_202_then_200_when_done(served: Served) -> None:
    """Past the deadline: 202 with Retry-After, Location, no-store; a held retry gets the 200."""
    with trio.fail_after(20):
        pending = await served.client.get("/gated/x?b=2&a=1")
        assert pending.status_code == 202
        assert pending.content == b""
        assert pending.headers["retry-after"].isdigit()
        assert pending.headers["location"] == "/gated/x?a=1&b=2"
        assert pending.headers["cache-control"] == "no-store"
        assert pending.headers["cache-status"] == "workerless; fwd=miss; detail=pending"
        async with trio.open_nursery() as nursery:
            results: list[httpx.Response] = []

            async def retry() -> None:
                results.append(await served.client.get(pending.headers["location"]))

            nursery.start_soon(retry)
            await trio.sleep(0.1)
            served.probe.gate("x").set()
    (done,) = results
    assert done.status_code == 200
    assert done.text == "gated x opened"
    assert "collapsed" in done.headers["cache-status"]
    assert served.probe.computations["gated/x"] == 1


async def test_concurrent_cold_key_computes_once(served: Served) -> None:
    """200 concurrent requests for one cold key: 200 identical 200s and one computation."""
    with trio.fail_after(30):
        responses = await concurrent_gets(served.client, "/quick/stampede?t=0.5", 200)
    assert len(responses) == 200
    assert {r.status_code for r in responses} == {200}
    assert {r.text for r in responses} == {"quick stampede #1"}
    assert served.probe.computations["quick/stampede"] == 1
    statuses = [r.headers["cache-status"] for r in responses]
    assert statuses.count("workerless; fwd=miss; stored") == 1


async def test_error_reaches_every_waiter_and_is_not_cached(served: Served) -> None:
    """A raising computation: every waiter gets 502 with a short body; the next request retries."""
    with trio.fail_after(15):
        responses = await concurrent_gets(served.client, "/boom?t=0.3", 10)
        assert {r.status_code for r in responses} == {502}
        assert all(len(r.content) < 100 for r in responses)
        assert all("detail=error" in r.headers["cache-status"] for r in responses)
        assert served.probe.computations["boom"] == 1
        served.probe.failing = False
        fixed = await served.client.get("/boom?t=0.3")
    assert fixed.status_code == 200
    assert fixed.text == "boom fixed"
    assert served.probe.computations["boom"] == 2


async def test_hard_limit_cancels_runaway(served: Served) -> None:
    """A computation past the hard limit is cancelled and reported as 504; nothing is cached."""
    with trio.fail_after(15):
        first = await served.client.get("/runaway")
        second = await served.client.get("/runaway")
    assert first.status_code == second.status_code == 504
    assert served.probe.computations["runaway"] == 2


async def test_client_gone_computation_fills_cache(served: Served) -> None:
    """A client that disconnects while waiting does not stop the computation, which is cached."""
    with trio.fail_after(15):
        with pytest.raises(httpx.ReadTimeout):
            await served.client.get("/sleep/gone?t=0.6", timeout=0.1)
        while not served.probe.computations["sleep/gone"]:  # noqa: ASYNC110 - a plain counter
            await trio.sleep(0.01)  # the request may still be on its way to the server
        await served.workerless.cacher.wait_idle()
        assert served.probe.finished == ["gone"]
        later = await served.client.get("/sleep/gone?t=0.6")
    assert later.status_code == 200
    assert later.headers["cache-status"].startswith("workerless; hit")
    assert served.probe.computations["sleep/gone"] == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405(served: Served, method: str) -> None:
    """Fragment routes answer GET and HEAD only; other methods get 405, nothing computed."""
    with trio.fail_after(10):
        response = await served.client.request(method, "/quick/m")
    assert response.status_code == 405
    assert {"GET", "HEAD"} <= {m.strip() for m in response.headers["allow"].split(",")}
    assert served.probe.computations["quick/m"] == 0


async def test_head_is_served_without_body(served: Served) -> None:
    """HEAD shares the GET cache entry and returns its headers without a body."""
    with trio.fail_after(10):
        await served.client.get("/quick/h")
        head = await served.client.head("/quick/h")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["cache-status"].startswith("workerless; hit")
    assert served.probe.computations["quick/h"] == 1


async def test_head_first_computes_a_body_that_get_serves(served: Served) -> None:
    """A HEAD on a cold key computes the full response; the next GET is a hit with the body."""
    with trio.fail_after(10):
        head = await served.client.head("/quick/head-first")
        get = await served.client.get("/quick/head-first")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert get.text == "quick head-first #1"
    assert get.headers["cache-status"].startswith("workerless; hit")


async def test_request_visible_inside_computation(served: Served) -> None:
    """The view reads request args, headers and view arguments while computing in background."""
    with trio.fail_after(10):
        response = await served.client.get("/echo/who?z=1&a=2&a=1", headers={"X-Probe": "seen"})
    assert response.status_code == 200
    assert response.json() == {
        "name": "who",
        "args": [["z", "1"], ["a", "2"], ["a", "1"]],
        "header": "seen",
        "method": "GET",
    }


async def test_key_is_query_order_independent_but_value_order_aware(served: Served) -> None:
    """Query fields in another order share a key; different values or value order do not."""
    with trio.fail_after(10):
        one = await served.client.get("/echo/k?a=1&b=2")
        same = await served.client.get("/echo/k?b=2&a=1")
        other = await served.client.get("/echo/k?a=1&a=2")
        swapped = await served.client.get("/echo/k?a=2&a=1")
    assert same.headers["cache-status"].startswith("workerless; hit")
    assert one.json()["args"] == same.json()["args"] == [["a", "1"], ["b", "2"]]
    assert other.json()["args"] == [["a", "1"], ["a", "2"]]
    assert swapped.json()["args"] == [["a", "2"], ["a", "1"]]
    assert served.probe.computations["echo"] == 3


async def test_key_hook(served: Served) -> None:
    """A key= hook decides what is shared: here only the user parameter counts."""
    with trio.fail_after(10):
        a1 = await served.client.get("/per-user?user=ann&x=1")
        a2 = await served.client.get("/per-user?user=ann&x=2")
        bob = await served.client.get("/per-user?user=bob")
    assert a1.text == a2.text == "user ann #1"
    assert bob.text == "user bob #2"


async def test_non_2xx_is_returned_but_not_cached(served: Served) -> None:
    """A 404 or 418 from the view reaches the client but is computed again next time."""
    with trio.fail_after(10):
        for code in (404, 418):
            first = await served.client.get(f"/status/{code}")
            second = await served.client.get(f"/status/{code}")
            assert first.status_code == second.status_code == code
            assert f"fwd-status={code}" in second.headers["cache-status"]
            assert "stored" not in second.headers["cache-status"]
            assert served.probe.computations[f"status/{code}"] == 2


ODD_PATHS = [
    "/quick/%00",
    "/quick/%FF%FE",
    "/quick/%C3%A9t%C3%A9",
    "/quick/a%20b",
    "/quick/a+b",
    "/quick/..%2F..%2Fetc",
    "/quick/x?%00=%00",
    "/quick/x?a=%FF",
    "/quick/x?" + "&".join(f"k{i}=v{i}" for i in range(400)),
    "/quick/" + "z" * 2000,
    "/quick/y?q=" + "%E2%9C%93" * 1500,
    "/quick/y?q=" + "%E2%9C%93" * 1499 + "x",
]


async def test_odd_urls_never_500_never_collide(served: Served) -> None:
    """Unicode, %00, invalid UTF-8, very long paths and queries: no 500, one key per URL."""
    with trio.fail_after(30):
        bodies = {}
        for path in ODD_PATHS:
            response = await served.client.get(path)
            assert response.status_code in (200, 404), (path, response.status_code)
            bodies[path] = response
            again = await served.client.get(path)
            assert again.status_code == response.status_code
            if response.status_code == 200:
                assert again.headers["cache-status"].startswith("workerless; hit"), path
                assert again.text == response.text
    keys = {k for k in served.probe.computations if k.startswith("quick/")}
    served_ok = [p for p, r in bodies.items() if r.status_code == 200]
    assert sum(served.probe.computations[k] for k in keys) == len(served_ok)


async def test_oversized_request_line_is_rejected_cleanly(served: Served) -> None:
    """A 200 KB query string gets a 4xx from hypercorn (or a close), never a 500 or a hang."""
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    connection = h11.Connection(h11.CLIENT)
    target = "/quick/big?q=" + "x" * 200_000
    request = h11.Request(method="GET", target=target, headers=[("Host", host)])
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            try:
                await stream.send_all(
                    connection.send(request) + connection.send(h11.EndOfMessage())
                )
            except trio.BrokenResourceError:
                return  # the server closed on us mid-send: a clean refusal
            event: object = h11.NEED_DATA
            while event is h11.NEED_DATA:
                data = await stream.receive_some()
                if not data:
                    return  # closed without a response: a clean refusal, not a 500
                connection.receive_data(data)
                event = connection.next_event()
    assert isinstance(event, h11.Response)
    assert 400 <= event.status_code < 500
    assert served.probe.computations["quick/big"] == 0


async def test_invalidate(served: Served) -> None:
    """Invalidating a URL makes the next request compute again."""
    with trio.fail_after(10):
        await served.client.get("/quick/inv?b=1&a=2")
        removed = await served.client.post(
            "/admin/invalidate", params={"url": "/quick/inv?a=2&b=1"}
        )
        again = await served.client.get("/quick/inv?a=2&b=1")
    assert removed.json() == {"removed": True}
    assert again.text == "quick inv #2"
    assert again.headers["cache-status"] == "workerless; fwd=miss; stored"


async def test_invalidation_during_computation_is_not_undone_by_its_result(served: Served) -> None:
    """A computation running across an invalidation does not store its older result."""
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(served.client.get, "/gated/inv")
            while not served.probe.computations["gated/inv"]:  # noqa: ASYNC110 - a counter
                await trio.sleep(0.01)
            await served.client.post("/admin/invalidate", params={"url": "/gated/inv"})
            served.probe.gate("inv").set()
        await served.workerless.cacher.wait_idle()
        again = await served.client.get("/gated/inv")
    assert again.status_code == 200
    assert again.headers["cache-status"] == "workerless; fwd=miss; stored"
    assert served.probe.computations["gated/inv"] == 2
