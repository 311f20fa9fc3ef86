"""WorkerlessMiddleware beyond the shared HTTP contract (test_contract.py and
test_caching_rules.py run that against it): what passes through untouched, credentials, 5xx,
big streamed bodies, mounted apps, the lifespan, and the example apps under real hypercorn."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import trio
from servers import ROOT, Hypercorn, hypercorn, serve_in_process
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, TextMessage
from wsproto.events import Request as WSRequest

from workerless import CachedRoute, Workerless, WorkerlessMiddleware
from workerless._checks import WRONG_WORKER

LIMIT = 150_000  # max_value_bytes of the recorder's middleware


@dataclass
class Recorder:
    """A bare ASGI app that records what reaches it, and answers as its query string says:
    ``status=N``, ``chunks=N`` body chunks of ``size=N`` bytes each."""

    calls: Counter[str] = field(default_factory=Counter)
    lifespan: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            self.calls["websocket " + scope["path"]] += 1
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "echo " + message["text"]})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        name = f"{scope['method']} {scope['path']}"
        self.calls[name] += 1
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        chunks, size = int(query.get("chunks", 1)), int(query.get("size", 0))
        text = f"{name} #{self.calls[name]} {body.decode()}".encode()
        headers = [(b"content-type", b"text/plain")]
        await send(
            {
                "type": "http.response.start",
                "status": int(query.get("status", 200)),
                "headers": headers,
            }
        )
        for i in range(chunks):
            chunk = (text if i == 0 else b"").ljust(size, b"x")
            await send({"type": "http.response.body", "body": chunk, "more_body": i < chunks - 1})


@dataclass
class Recorded:
    url: str
    client: httpx.AsyncClient
    recorder: Recorder


@pytest.fixture
async def recorded(store_url: str) -> AsyncIterator[Recorded]:
    recorder = Recorder()
    routes = ["/cached/*", CachedRoute(re.compile(r"/keyed/\w+"), key=_user_key)]
    app = WorkerlessMiddleware(
        recorder, routes=routes, store=store_url, max_value_bytes=LIMIT, environ={}
    )
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        yield Recorded(url, client, recorder)


def _user_key(scope: dict[str, Any]) -> str:
    """A key that says how the answer varies: on the ``user`` cookie (and nothing else)."""
    cookies = dict(scope["headers"]).get(b"cookie", b"").decode()
    user = re.search(r"user=(\w+)", cookies)
    return f"{scope['path']}?user={user.group(1) if user else ''}"


async def test_other_paths_and_methods_pass_through_untouched(recorded: Recorded) -> None:
    """A path outside the routes and a POST on a route reach the app every time, body and
    all, with no Cache-Status; only GET on a route is cached."""
    with trio.fail_after(10):
        for _ in range(2):
            other = await recorded.client.get("/other")
            post = await recorded.client.post("/cached/a", content=b"the body")
        get = [await recorded.client.get("/cached/a") for _ in range(2)]
    assert other.text == "GET /other #2 "
    assert post.text == "POST /cached/a #2 the body"
    assert "cache-status" not in other.headers and "cache-status" not in post.headers
    assert recorded.recorder.calls["GET /cached/a"] == 1
    assert get[1].headers["cache-status"].startswith("workerless; hit")


async def test_websocket_and_lifespan_pass_through(recorded: Recorded) -> None:
    """A websocket on a cached path reaches the app; the app got the server's lifespan."""
    with trio.fail_after(10):
        echoed = await websocket_echo(recorded.url, "/cached/ws", "hello")
    assert echoed == "echo hello"
    assert recorded.recorder.calls["websocket /cached/ws"] == 1
    assert recorded.recorder.lifespan == ["lifespan.startup"]


async def test_cookie_and_authorization_are_never_shared(recorded: Recorded) -> None:
    """Requests with Cookie or Authorization run through the app uncached, neither served
    another's response nor leaving theirs for anyone; a route whose key says how it
    varies on the cookie caches per user."""
    client = recorded.client
    with trio.fail_after(10):
        anonymous = await client.get("/cached/me")
        alice = await client.get("/cached/me", headers={"Cookie": "user=alice"})
        bob = await client.get("/cached/me", headers={"Authorization": "Bearer bob"})
        anonymous_again = await client.get("/cached/me")
        alice_again = await client.get("/cached/me", headers={"Cookie": "user=alice"})
        keyed = [
            await client.get("/keyed/me", headers={"Cookie": f"user={user}"})
            for user in ("alice", "bob", "alice")
        ]
    assert [anonymous.text, alice.text, bob.text] == [f"GET /cached/me #{n} " for n in (1, 2, 3)]
    assert anonymous_again.text == "GET /cached/me #1 "
    assert alice_again.text == "GET /cached/me #4 "
    assert "cache-status" not in alice_again.headers
    assert [r.text for r in keyed] == [
        "GET /keyed/me #1 ",
        "GET /keyed/me #2 ",
        "GET /keyed/me #1 ",
    ]


async def test_5xx_from_the_app_is_passed_on_never_cached(recorded: Recorded) -> None:
    """A 500 or 503 the app answers reaches the client each time and is computed again."""
    with trio.fail_after(10):
        for status in (500, 503):
            first = await recorded.client.get(f"/cached/e{status}?status={status}")
            second = await recorded.client.get(f"/cached/e{status}?status={status}")
            assert first.status_code == second.status_code == status
            assert "stored" not in second.headers["cache-status"]
            assert f"fwd-status={status}" in second.headers["cache-status"]
            assert recorded.recorder.calls[f"GET /cached/e{status}"] == 2


async def test_streamed_body_under_the_limit_is_cached(recorded: Recorded) -> None:
    """A body streamed in several chunks, under max_value_bytes, is cached whole."""
    path = "/cached/chunks?chunks=3&size=40000"
    with trio.fail_after(10):
        first = await recorded.client.get(path)
        second = await recorded.client.get(path)
    assert len(first.content) == len(second.content) == 120_000
    assert first.content == second.content
    assert second.headers["cache-status"].startswith("workerless; hit")
    assert recorded.recorder.calls["GET /cached/chunks"] == 1


async def test_streamed_body_over_the_limit_passes_through_uncached(recorded: Recorded) -> None:
    """A body over max_value_bytes reaches the client whole, straight from the app, and is
    never stored: later requests go straight to the app."""
    path = "/cached/big?chunks=4&size=50000"
    with trio.fail_after(10):
        responses = [await recorded.client.get(path) for _ in range(3)]
    assert all(r.status_code == 200 and len(r.content) == 200_000 for r in responses)
    assert all("cache-status" not in r.headers for r in responses)
    # The first request's capture stopped at the limit, then it ran through the app itself.
    assert [r.text.split(" ", 3)[2] for r in responses] == ["#2", "#3", "#4"]


async def test_app_without_lifespan_mounted_starts_on_first_request() -> None:
    """Mounted in Starlette (no lifespan reaches mounted apps), the middleware starts its
    cacher on the first request; a 202's Location keeps the mount point; a QuartTrio app
    with Workerless mounted the same way serves its fragments too (it answered 503
    not-running forever)."""
    calls = Counter[str]()

    async def page(request: Request) -> PlainTextResponse:
        name = request.path_params["name"]
        calls[name] += 1
        await trio.sleep(float(request.query_params.get("t", "0")))
        return PlainTextResponse(f"page {name} #{calls[name]}")

    inner = Starlette(routes=[Route("/page/{name}", page)])
    cached = WorkerlessMiddleware(inner, routes=["/page/*"], deadline=0.5, environ={})
    legacy, workerless = _quart_fragment_app()
    parent = Starlette(routes=[Mount("/sub", app=cached), Mount("/legacy", app=legacy)])
    with trio.fail_after(15):
        async with serve_in_process(parent) as url, httpx.AsyncClient(base_url=url) as client:
            first = await client.get("/sub/page/a")
            second = await client.get("/sub/page/a")
            pending = await client.get("/sub/page/slow?t=2")
            fragments = [await client.get("/legacy/fragment/x") for _ in range(2)]
    assert first.text == second.text == "page a #1"
    assert first.headers["cache-status"] == "workerless; fwd=miss; stored"
    assert second.headers["cache-status"].startswith("workerless; hit")
    assert pending.status_code == 202
    assert pending.headers["location"] == "/sub/page/slow?t=2"
    assert [r.status_code for r in fragments] == [200, 200]
    assert fragments[1].headers["cache-status"].startswith("workerless; hit")
    assert workerless.cacher.statistics().computations == 1


def _quart_fragment_app() -> tuple[Any, Workerless]:
    from quart_trio import QuartTrio

    app = QuartTrio(__name__)
    workerless = Workerless(app, environ={})

    @workerless.fragment("/fragment/<name>")
    async def fragment(name: str) -> str:
        return f"<p>{name}</p>"

    return app, workerless


def test_keywords_are_checked_where_written() -> None:
    """Bad settings and route options fail at construction, naming the keyword and route."""
    with pytest.raises(ValueError, match="deadline= must be a positive number"):
        WorkerlessMiddleware(Recorder(), routes=["/x"], deadline=-1)
    with pytest.raises(TypeError, match="ttl= of route '/y' must be a number"):
        WorkerlessMiddleware(Recorder(), routes=[CachedRoute("/y", ttl="5")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key= must be a function"):
        WorkerlessMiddleware(Recorder(), routes=["/x"], key="path")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one route"):
        WorkerlessMiddleware(Recorder(), routes=[])


# -- the example apps, under a real hypercorn --worker-class trio ------------------------------

EXAMPLES = ["example_fastapi", "example_starlette", "example_quart"]


@pytest.fixture(scope="module", params=EXAMPLES)
def example(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hypercorn]:
    """One example app served by ``hypercorn --worker-class trio apps.<name>:app``."""
    with hypercorn(f"apps.{request.param}:app", tmp_path_factory.mktemp(request.param)) as server:
        yield server


def test_example_serves_skeleton_script_and_cached_fragments(example: Hypercorn) -> None:
    """Each example app serves its skeleton page with the client script, the script itself,
    and its fragments: computed once, then hits."""
    with httpx.Client(base_url=example.url, timeout=15) as client:
        page = client.get("/")
        script = client.get("/workerless/static/workerless.js")
        first = client.get("/fragment/a")
        second = client.get("/fragment/a")
    assert page.text.count('data-fragment="/fragment/') == 2
    assert '<script src="/workerless/static/workerless.js"' in page.text
    assert script.status_code == 200 and "workerless.js" in script.text
    assert first.text == second.text == "<p>result for a</p>"
    assert first.headers["cache-status"] == "workerless; fwd=miss; stored"
    assert second.headers["cache-status"].startswith("workerless; hit")


def test_readme_examples_are_the_tested_ones() -> None:
    """The README's middleware section shows the example apps' code as the tests run it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Any ASGI app: WorkerlessMiddleware\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    sources = {name: (ROOT / "tests" / "apps" / f"{name}.py").read_text() for name in EXAMPLES}
    assert blocks[0] == sources["example_fastapi"]
    for line in "".join(blocks[1:]).splitlines():
        if line.strip() and not line.startswith("#"):
            assert any(line in source for source in sources.values()), line


@pytest.mark.parametrize(
    "command",
    [
        ["uvicorn", "--host", "127.0.0.1", "--port", "0"],
        ["hypercorn", "--bind", "127.0.0.1:0"],  # its default worker class runs asyncio
    ],
)
def test_asyncio_server_fails_start_up_naming_the_fix(command: list[str]) -> None:
    """Under an asyncio server (uvicorn, plain hypercorn), start-up fails with one line that
    names ``hypercorn --worker-class trio``; the server stops."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    done = subprocess.run(
        [sys.executable, "-m", *command, "apps.example_starlette:app"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
    )
    assert WRONG_WORKER in done.stdout + done.stderr
    assert "hypercorn --worker-class trio" in WRONG_WORKER


# -- a small websocket client --------------------------------------------------------------------


async def websocket_echo(url: str, path: str, text: str) -> str:
    """Open a websocket on ``path``, send ``text``, return the first text message back."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        connection = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(connection.send(WSRequest(host=host, target=path)))
        while True:
            data = await stream.receive_some()
            assert data, "the server closed the connection"
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, AcceptConnection):
                    await stream.send_all(connection.send(Message(data=text)))
                elif isinstance(event, TextMessage):
                    return event.data
                elif isinstance(event, CloseConnection):
                    raise AssertionError(f"closed before a message: {event.code}")
