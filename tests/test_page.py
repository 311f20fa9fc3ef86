"""Streamed pages (stream_template) on a real hypercorn: what the response carries, and when."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from apps import page_app
from quart import Response
from quart_trio import QuartTrio
from servers import ROOT, serve_in_process

from workerless import Workerless, stream_template

TIMEOUT = 10.0
_runs = itertools.count()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of the test app served in this trio run."""
    async with (
        serve_in_process(page_app.app) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client,
    ):
        yield client


def new_run() -> str:
    """A fresh page name: its fragments have keys and gates of their own."""
    return f"r{next(_runs)}"


class Stream:
    """A streamed page being read: what arrived so far, chunk by chunk."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.text = ""
        self.response: httpx.Response | None = None

    async def until(self, pattern: str) -> str:
        """Read until ``pattern`` (a regex) is in what arrived; return what arrived."""
        while not re.search(pattern, self.text):
            self.text += (await anext(self.chunks)).decode()
        return self.text


@asynccontextmanager
async def streamed(client: httpx.AsyncClient, url: str) -> AsyncIterator[Stream]:
    """GET ``url`` and read its body as it comes; the response is closed on the way out."""
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        async with aclosing(response.aiter_raw()) as chunks:
            stream = Stream(chunks)
            stream.response = response
            yield stream
            async for _ in chunks:  # to its end: httpx's own generators then close cleanly
                pass


def slot_chunks(text: str) -> list[tuple[str, str]]:
    """The streamed fragments, in the order they were written: (slot, state)."""
    return re.findall(r'<div slot="(wl-\d+)" class="wl-chunk" data-fragment-state="(\w+)"', text)


async def release(client: httpx.AsyncClient, name: str) -> None:
    assert (await client.post(f"/release/{name}")).status_code == 200


async def calls(client: httpx.AsyncClient, name: str) -> int:
    calls: int = (await client.get(f"/calls/{name}")).json()["calls"]
    return calls


async def test_skeleton_first_then_fragments_in_completion_order(
    client: httpx.AsyncClient,
) -> None:
    """The skeleton comes before any fragment is done; fragments follow in the order they finish,
    each in its slot, then the end of the page; one response with the streaming headers."""
    run = new_run()
    with trio.fail_after(TIMEOUT):
        async with streamed(client, f"/page/{run}?names=a,b,c") as stream:
            response = stream.response
            assert response is not None
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert response.headers["x-accel-buffering"] == "no"
            assert "content-length" not in response.headers
            skeleton = await stream.until("</template>")
            assert f"Skeleton of {run}" in skeleton
            assert skeleton.count('<slot name="wl-') == 3
            assert slot_chunks(skeleton) == []
            await release(client, f"{run}-b")
            await stream.until('<div slot="wl-1"')
            await release(client, f"{run}-c")
            await stream.until('<div slot="wl-2"')
            await release(client, f"{run}-a")
            text = await stream.until("</html>")
    assert slot_chunks(text) == [("wl-1", "loaded"), ("wl-2", "loaded"), ("wl-0", "loaded")]
    assert '<div slot="wl-1" class="wl-chunk" data-fragment-state="loaded"' in text
    assert re.search(rf'<div slot="wl-1"[^>]*>\s*<p class="part" data-name="{run}-b">', text)
    assert text.index("</wl-page>") > text.index('<div slot="wl-0"')


async def test_streamed_fragment_is_a_hit_for_its_url_and_back(client: httpx.AsyncClient) -> None:
    """A fragment computed for a streamed page is a cache hit for a GET of its URL, and one
    fetched first is inlined in the page's skeleton: same cache, same key."""
    run = new_run()
    with trio.fail_after(TIMEOUT):
        await release(client, f"{run}-a")
        await release(client, f"{run}-b")
        page = await client.get(f"/page/{run}?names=a")
        assert slot_chunks(page.text) == [("wl-0", "loaded")]
        fetched = await client.get(f"/part/{run}-a")
        assert fetched.headers["cache-status"].startswith("workerless; hit")

        assert (await client.get(f"/part/{run}-b")).status_code == 200
        async with streamed(client, f"/page/{run}?names=b") as stream:
            skeleton = await stream.until("</template>")
    assert '<slot name="wl-0">' not in skeleton
    assert re.search(r'data-fragment-state="loaded" data-cache-status="workerless; hit', skeleton)
    assert f'<p class="part" data-name="{run}-b">' in skeleton
    assert await calls(client, f"{run}-a") == 1
    assert await calls(client, f"{run}-b") == 1


async def test_page_and_fetch_share_one_computation(client: httpx.AsyncClient) -> None:
    """A page and a plain fetch of the same fragment at the same time run its view once."""
    run = new_run()
    cacher = page_app.workerless.cacher
    collapsed = cacher.statistics().collapsed
    with trio.fail_after(TIMEOUT):
        async with streamed(client, f"/page/{run}?names=a") as stream:
            await stream.until("</template>")
            async with trio.open_nursery() as nursery:
                fetched: list[httpx.Response] = []

                async def fetch() -> None:
                    fetched.append(await client.get(f"/part/{run}-a"))

                nursery.start_soon(fetch)
                # In this process: wait until the fetch joined the page's computation.
                while cacher.statistics().collapsed == collapsed:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                await release(client, f"{run}-a")
            text = await stream.until("</html>")
    assert slot_chunks(text) == [("wl-0", "loaded")]
    assert fetched[0].status_code == 200
    assert "collapsed" in fetched[0].headers["cache-status"]
    assert await calls(client, f"{run}-a") == 1


async def test_failing_fragment_shows_an_error_and_is_not_cached(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing fragment gets an error box with a Retry link; the others arrive; nothing is
    cached, so the next request computes it again."""
    run = new_run()
    caplog.set_level(logging.CRITICAL, logger="workerless")  # the failure's traceback is expected
    with trio.fail_after(TIMEOUT):
        async with streamed(client, f"/page/{run}?names=failing,a") as stream:
            await stream.until("</template>")
            await release(client, f"{run}-failing")
            await release(client, f"{run}-a")
            text = await stream.until("</html>")
        assert sorted(slot_chunks(text)) == [("wl-0", "error"), ("wl-1", "loaded")]
        assert "could not be loaded (HTTP 502)" in text
        assert f'<a class="wl-retry" href="/part/{run}-failing" data-fragment-retry>' in text
        assert (await client.get(f"/part/{run}-failing")).status_code == 502
    assert await calls(client, f"{run}-failing") == 2


async def test_past_the_page_deadline_a_fragment_is_left_pending(
    client: httpx.AsyncClient,
) -> None:
    """At the page's deadline the response ends; a fragment not done by then is left pending
    with a link to its URL, and its computation goes on (a later fetch of it gets the result)."""
    run = new_run()
    with trio.fail_after(TIMEOUT):
        await release(client, f"{run}-a")
        started = trio.current_time()
        text = (await client.get(f"/page/{run}?names=a,late&deadline=0.5")).text
        took = trio.current_time() - started
        assert took < TIMEOUT / 2
        assert ("wl-1", "pending") in slot_chunks(text)
        assert f'<a class="wl-fallback" href="/part/{run}-late">late: still computing' in text
        assert text.rstrip().endswith("</html>")
        await release(client, f"{run}-late")
        fetched = await client.get(f"/part/{run}-late")
    assert fetched.status_code == 200
    assert await calls(client, f"{run}-late") == 1


async def test_head_sends_headers_and_computes_nothing(client: httpx.AsyncClient) -> None:
    """HEAD of a streamed page answers its headers with no body and starts no fragment."""
    run = new_run()
    with trio.fail_after(TIMEOUT):
        response = await client.head(f"/page/{run}?names=a")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == b""
    assert await calls(client, f"{run}-a") == 0


async def test_a_url_that_is_no_fragment_is_left_to_the_browser(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A placeholder naming a URL that is not a fragment route (or no route) is left pending
    with a link, and a warning logged; the page is still a 200 with its other fragments."""
    run = new_run()
    with trio.fail_after(TIMEOUT):
        await release(client, f"{run}-a")
        for extra in ("/plain", "/nowhere"):
            response = await client.get(f"/page/{run}", params={"names": "a", "extra": extra})
            assert response.status_code == 200
            assert f'<a class="wl-fallback" href="{extra}">extra: still computing' in response.text
            assert f"{extra} is not a fragment route" in caplog.text
    assert await calls(client, f"{run}-a") == 1


async def test_readme_snippet_streams_a_page(tmp_path: Path) -> None:
    """The "Streamed page" snippet of the README, as written, streams its template's fragments."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"### Streamed page\n.*?```python\n(.*?)```", readme, re.S)
    assert match is not None
    (tmp_path / "index.html").write_text(
        '{% extends "workerless/layout.html" %}{% import "workerless/macros.html" as wl %}'
        "{% block body %}{% for card in cards %}{{ wl.fragment(card) }}{% endfor %}{% endblock %}"
    )
    app = QuartTrio(__name__, template_folder=str(tmp_path))
    workerless = Workerless(app, store="memory://")

    @workerless.fragment("/card/<name>")
    async def card(name: str) -> str:
        return f"<p>card {name}</p>"

    namespace = {"app": app, "Response": Response, "cards": ["/card/x", "/card/y"]}
    exec(match.group(1), namespace)  # the README's own text
    with trio.fail_after(TIMEOUT):
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
            page = await client.get("/streamed")
    assert page.headers["x-accel-buffering"] == "no"
    assert page.text.count("<p>card ") == 2


async def test_a_client_leaving_mid_stream_harms_nothing(client: httpx.AsyncClient) -> None:
    """A client that leaves after the skeleton: the fragment is still computed and cached, and
    the server goes on serving."""
    run = new_run()
    with trio.fail_after(TIMEOUT):
        host, port = str(client.base_url.host), client.base_url.port
        assert port is not None
        # A bare socket: closed as soon as the skeleton is in, with no client library around.
        async with await trio.open_tcp_stream(host, port) as stream:
            await stream.send_all(f"GET /page/{run}?names=a HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = b""
            while b"</template>" not in received:
                received += await stream.receive_some()
        await release(client, f"{run}-a")
        fetched = await client.get(f"/part/{run}-a")
        again = await client.get(f"/page/{run}?names=a")
    assert fetched.status_code == 200
    assert again.text.count(f'data-name="{run}-a"') == 1
    assert await calls(client, f"{run}-a") == 1


async def test_a_bad_page_deadline_is_refused_by_name() -> None:
    """stream_template(deadline=...) checks its deadline by the settings' rules, naming it."""
    async with page_app.app.test_request_context("/page/x"):
        with pytest.raises(ValueError, match="deadline= of stream_template"):
            await stream_template("page_app.html", deadline=-1, run="x", names=[], extra="")
        with pytest.raises(TypeError, match="deadline= of stream_template"):
            await stream_template("page_app.html", deadline="5", run="x", names=[], extra="")
