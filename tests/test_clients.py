"""What cached routes send to htmx (HX-Request) and Turbo (Turbo-Frame), over real HTTP: the
same answers from fragment routes and from WorkerlessMiddleware in front of Starlette."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from apps.clients_app import SLOW_DEADLINE, make_app
from servers import serve_in_process
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from workerless import CachedRoute, WorkerlessMiddleware

HTMX = {"HX-Request": "true"}
SLOW = "/fragment/slow?t=1.5"  # past its 0.5 s deadline


def starlette_app() -> Any:
    """The fragments of apps/clients_app.py as a Starlette app behind WorkerlessMiddleware."""
    failures: Counter[str] = Counter()

    async def fast(request: Request) -> HTMLResponse:
        return HTMLResponse('<p class="content">fast content</p>')

    async def slow(request: Request) -> HTMLResponse:
        await trio.sleep(float(request.query_params["t"]))
        return HTMLResponse('<p class="content">slow content</p>')

    async def failing(request: Request) -> HTMLResponse:
        failures[request.url.query] += 1
        if failures[request.url.query] == 1:  # the first computation per key fails
            raise RuntimeError("upstream exploded")
        return HTMLResponse('<p class="content">failing content, after a retry</p>')

    async def framed(request: Request) -> HTMLResponse:
        return HTMLResponse('<turbo-frame id="framed"><p>wrapped by the view</p></turbo-frame>')

    async def json(request: Request) -> JSONResponse:
        return JSONResponse({"kind": "json"})

    async def missing(request: Request) -> HTMLResponse:
        raise HTTPException(404)

    views = {"fast": fast, "slow": slow, "failing": failing, "framed": framed, "json": json}
    routes = [Route(f"/fragment/{name}", view) for name, view in views.items()]
    app = Starlette(routes=[*routes, Route("/fragment/missing", missing)])
    cached = [CachedRoute("/fragment/slow", deadline=SLOW_DEADLINE), "/fragment/*"]
    return WorkerlessMiddleware(app, routes=cached, store="memory://", environ={})


@pytest.fixture(params=["fragment", "middleware"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()[0] if request.param == "fragment" else starlette_app()
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


def frame(frame_id: str) -> dict[str, str]:
    return {"Turbo-Frame": frame_id}


async def test_plain_request_gets_the_view_output_and_vary(client: httpx.AsyncClient) -> None:
    """A plain request gets the view's body as is, and every answer varies on both headers."""
    with trio.fail_after(10):
        plain = await client.get("/fragment/fast")
        pending = await client.get(SLOW)
    assert plain.text == '<p class="content">fast content</p>'
    assert pending.status_code == 202
    assert pending.text == ""
    for response in (plain, pending):
        assert response.headers["vary"] == "HX-Request, Turbo-Frame"
        assert "hx-reswap" not in response.headers


async def test_turbo_frame_is_wrapped_on_the_way_out_never_cached(
    client: httpx.AsyncClient,
) -> None:
    """A Turbo-Frame miss is wrapped in its frame; the plain hit after it is not, nor a 2nd id."""
    with trio.fail_after(10):
        framed = await client.get("/fragment/fast", headers=frame("card-1"))
        plain = await client.get("/fragment/fast")
        other = await client.get("/fragment/fast", headers=frame('x"><script>'))
    assert framed.headers["cache-status"] == "workerless; fwd=miss; stored"
    assert (
        framed.text == '<turbo-frame id="card-1"><p class="content">fast content</p></turbo-frame>'
    )
    assert plain.headers["cache-status"].startswith("workerless; hit")
    assert plain.text == '<p class="content">fast content</p>'
    assert other.text == (
        '<turbo-frame id="x&quot;&gt;&lt;script&gt;">'
        '<p class="content">fast content</p></turbo-frame>'
    )
    assert int(framed.headers["content-length"]) == len(framed.content)


async def test_turbo_frame_has_its_own_etag_and_revalidates(client: httpx.AsyncClient) -> None:
    """A wrapped body gets an ETag of its own per frame; If-None-Match with it answers 304."""
    with trio.fail_after(10):
        plain = await client.get("/fragment/fast")
        framed = await client.get("/fragment/fast", headers=frame("card-1"))
        other = await client.get("/fragment/fast", headers=frame("card-2"))
        again = await client.get(
            "/fragment/fast", headers=frame("card-1") | {"If-None-Match": framed.headers["etag"]}
        )
        crossed = await client.get(
            "/fragment/fast", headers={"If-None-Match": framed.headers["etag"]}
        )
    tags = {plain.headers["etag"], framed.headers["etag"], other.headers["etag"]}
    assert len(tags) == 3
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == framed.headers["etag"]
    assert crossed.status_code == 200  # the framed tag never validates the plain body
    assert crossed.text == plain.text


async def test_turbo_leaves_framed_and_non_html_bodies_alone(client: httpx.AsyncClient) -> None:
    """A body that already has the requested frame, and a JSON body, are sent unwrapped."""
    with trio.fail_after(10):
        framed = await client.get("/fragment/framed", headers=frame("framed"))
        data = await client.get("/fragment/json", headers=frame("framed"))
    assert framed.text == '<turbo-frame id="framed"><p>wrapped by the view</p></turbo-frame>'
    assert data.json() == {"kind": "json"}


async def test_htmx_202_keeps_the_slot_and_announces_pending(client: httpx.AsyncClient) -> None:
    """To htmx a 202 says HX-Reswap: none and triggers workerless:pending; still 202, no body."""
    with trio.fail_after(10):
        response = await client.get(SLOW, headers=HTMX)
    assert response.status_code == 202
    assert response.headers["hx-reswap"] == "none"
    assert response.headers["hx-trigger"] == "workerless:pending"
    assert response.headers["retry-after"] == "1"
    assert response.headers["cache-control"] == "no-store"
    assert response.text == ""


async def test_htmx_failure_is_an_error_box_with_retry(client: httpx.AsyncClient) -> None:
    """To htmx a failed computation is a 502 HTML error box with a Retry button, not cached."""
    with trio.fail_after(10):
        failed = await client.get("/fragment/failing", headers=HTMX)
        plain = await client.get("/fragment/failing?again=1")
    assert failed.status_code == 502
    assert failed.headers["content-type"].startswith("text/html")
    assert failed.headers["hx-reswap"] == "innerHTML"
    assert failed.headers["cache-control"] == "no-store"
    assert "could not be loaded (HTTP 502)" in failed.text
    assert '<button type="button" class="wl-retry" data-workerless-retry>' in failed.text
    assert plain.status_code == 502
    assert plain.headers["content-type"].startswith("text/plain")  # the plain answer unchanged


async def test_htmx_gets_a_view_response_as_is(client: httpx.AsyncClient) -> None:
    """A view's own answers (a 200, its abort(404)) reach htmx unchanged."""
    with trio.fail_after(10):
        found = await client.get("/fragment/fast", headers=HTMX)
        missing = await client.get("/fragment/missing", headers=HTMX)
    assert found.text == '<p class="content">fast content</p>'
    assert missing.status_code == 404
    assert "hx-reswap" not in missing.headers
    assert "wl-error" not in missing.text


async def test_turbo_202_and_failure_are_html_frames(client: httpx.AsyncClient) -> None:
    """To Turbo a 202 is an HTML frame with a reload link, a 502 a frame with a Retry link."""
    with trio.fail_after(10):
        pending = await client.get(SLOW, headers=frame("slow"))
        failed = await client.get("/fragment/failing?b=2&a=1", headers=frame("bad"))
    assert pending.status_code == 202
    assert pending.headers["content-type"].startswith("text/html")
    assert pending.text.startswith('<turbo-frame id="slow"><p class="wl-pending"')
    assert '<a href="/fragment/slow?t=1.5">' in pending.text
    assert failed.status_code == 502
    assert failed.text.startswith('<turbo-frame id="bad"><div class="wl-error"')
    assert 'href="/fragment/failing?b=2&amp;a=1" data-workerless-retry>Retry</a>' in failed.text
    assert failed.headers["cache-control"] == "no-store"
