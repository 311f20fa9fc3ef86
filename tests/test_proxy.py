"""Fragment routes behind a real Debian nginx, under a sub-path, and their Location header."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import h11
import httpx
import pytest
from servers import Hypercorn, free_port, hypercorn, nginx, readme_nginx_blocks

from workerless._config import Settings
from workerless._http import location

APP = "apps.proxy_app:app"
ENV = {"WORKERLESS_STORE": "memory://"}
# nginx answers its own 504 after proxy_read_timeout (60 s): far above this bound.
TIMEOUT = 10.0


def fill_ports(block: str, listen: int, upstreams: dict[str, int]) -> str:
    """A README block with its example ports replaced by the test's free ones."""
    assert block.count("listen 80;") == 1
    block = block.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    for example, port in upstreams.items():
        assert example in block
        block = block.replace(example, f"127.0.0.1:{port}")
    return block


@dataclass
class Proxied:
    """Two hypercorns (at the root, and mounted under /app) and the nginx servers in front."""

    direct: Hypercorn
    default: str  # nginx's default proxy config: `location / { proxy_pass ...; }`, HTTP/1.0
    readme: str  # the README's configuration for an app at the root
    mounted: str  # the README's configuration for an app under /app/
    stopped: str  # the default config, in front of a port that stopped_port reserves
    stopped_port: int
    impatient: str  # the default config with proxy_read_timeout 1s


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """One nginx for the module, with five server blocks on free ports of 127.0.0.1."""
    logs = tmp_path_factory.mktemp("proxy")
    root_block, mounted_block = readme_nginx_blocks("Behind a proxy")
    listen = [free_port() for _ in range(5)]
    stopped_port = free_port()
    with (
        hypercorn(APP, logs, env=ENV) as direct,
        hypercorn(APP, logs, env=ENV, args=("--root-path", "/app")) as mounted,
    ):
        default = f"""
server {{
    listen 127.0.0.1:{listen[0]};
    location / {{ proxy_pass http://127.0.0.1:{direct.port}; }}
}}
server {{
    listen 127.0.0.1:{listen[3]};
    location / {{ proxy_pass http://127.0.0.1:{stopped_port}; }}
}}
server {{
    listen 127.0.0.1:{listen[4]};
    location / {{ proxy_pass http://127.0.0.1:{direct.port}; proxy_read_timeout 1s; }}
}}
"""
        http = "\n".join(
            [
                default,
                fill_ports(root_block, listen[1], {"127.0.0.1:8000": direct.port}),
                fill_ports(mounted_block, listen[2], {"127.0.0.1:8001": mounted.port}),
            ]
        )
        with nginx(http, logs / "nginx", ports=listen):
            base = [f"http://127.0.0.1:{port}" for port in listen]
            yield Proxied(direct, base[0], base[1], base[2], base[3], stopped_port, base[4])
        # Nothing about their shutdown is tested here, and a graceful stop takes seconds.
        direct.kill()
        mounted.kill()


def get(url: str, method: str = "GET") -> httpx.Response:
    """One request on a fresh connection, bounded well under nginx's 60 s."""
    with httpx.Client(timeout=TIMEOUT) as client:
        return client.request(method, url)


def follow(url: str) -> httpx.Response:
    """GET ``url`` until it is no longer 202; each answer must come from the same computation."""
    for _ in range(20):
        response = get(url)
        # A different key would start a computation of its own: "fwd=miss" without "collapsed".
        assert re.search(r"; (hit|fwd=miss; collapsed)", response.headers["cache-status"])
        if response.status_code != 202:
            return response
    raise AssertionError(f"{url} still 202 after 20 requests")


def assert_sized(response: httpx.Response) -> None:
    """The response carries a Content-Length that matches its body."""
    assert response.headers.get("content-length") == str(len(response.content))


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/slow/default", 202, "detail=pending"),
        ("/boom", 502, "detail=error"),
        ("/runaway", 504, "detail=error"),
        ("/fast/default", 200, "stored"),
    ],
)
def test_each_outcome_arrives_through_default_nginx(
    proxied: Proxied, path: str, status: int, detail: str
) -> None:
    """Through nginx's default proxy_pass (HTTP/1.0 upstream), each answer arrives with a length."""
    response = get(proxied.default + path)
    assert response.status_code == status
    assert response.headers["cache-status"].endswith(detail)
    assert_sized(response)


def test_hit_and_head_arrive_through_default_nginx(proxied: Proxied) -> None:
    """A computed HEAD, then a hit by GET and by HEAD, all arrive through the default nginx."""
    first = get(proxied.default + "/fast/head", "HEAD")
    hit = get(proxied.default + "/fast/head")
    head_hit = get(proxied.default + "/fast/head", "HEAD")
    assert first.status_code == hit.status_code == head_hit.status_code == 200
    assert first.headers["cache-status"] == "workerless; fwd=miss; stored"
    assert hit.headers["cache-status"].startswith("workerless; hit")
    assert_sized(hit)
    assert first.headers["content-length"] == head_hit.headers["content-length"] == "16"


def test_503_arrives_through_default_nginx(proxied: Proxied, tmp_path: Path) -> None:
    """A fragment route of a stopped Workerless answers 503 through the default nginx at once."""
    with hypercorn(APP, tmp_path, env=ENV, port=proxied.stopped_port) as server:
        assert get(f"{server.url}/admin/stop", "POST").text == "stopped"
        response = get(proxied.stopped + "/fast/stopped")
        server.kill()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert_sized(response)


def test_readme_config_serves_202_then_fragment(proxied: Proxied) -> None:
    """The README's nginx config passes a 202 and then the computed fragment on its URL."""
    pending = get(proxied.readme + "/slow/readme?t=1")
    assert pending.status_code == 202
    assert pending.headers["location"] == "/slow/readme?t=1"
    done = follow(proxied.readme + pending.headers["location"])
    assert done.status_code == 200
    assert done.text == "<p>slow readme</p>"


def test_deadline_above_proxy_timeout_gets_the_proxy_504(proxied: Proxied) -> None:
    """With proxy_read_timeout 1s, a 3 s deadline gets nginx's 504; a 0.5 s one gets the 202."""
    cut = get(proxied.impatient + "/patient")
    assert cut.status_code == 504
    assert "cache-status" not in cut.headers  # nginx's own answer, not workerless's
    assert get(proxied.impatient + "/slow/impatient").status_code == 202


def test_readme_timeouts_exceed_default_deadline() -> None:
    """Every proxy_read_timeout in the README's nginx configs is above the default deadline."""
    blocks = readme_nginx_blocks("Behind a proxy") + readme_nginx_blocks("HTTP/2")
    timeouts = re.findall(r"proxy_read_timeout (\d+)s;", "".join(blocks))
    assert len(timeouts) == len(blocks) == 3
    assert all(int(seconds) > Settings().deadline for seconds in timeouts)


def test_sub_path_location_keeps_prefix(proxied: Proxied) -> None:
    """Under /app/ with --root-path /app, the 202's Location keeps /app and serves the fragment."""
    pending = get(proxied.mounted + "/app/slow/mounted?t=1")
    assert pending.status_code == 202
    assert pending.headers["location"] == "/app/slow/mounted?t=1"
    done = follow(proxied.mounted + pending.headers["location"])
    assert done.status_code == 200
    assert done.text == "<p>slow mounted</p>"


def test_sub_path_keys_and_links_are_below_prefix(proxied: Proxied) -> None:
    """Under /app/, url_for links carry the prefix and invalidate() takes the app's own path."""
    assert get(proxied.mounted + "/app/").text == "/app/fast/linked"
    assert get(proxied.mounted + "/app/fast/linked").status_code == 200
    removed = get(proxied.mounted + "/app/admin/invalidate?url=/fast/linked", "POST")
    assert removed.json() == {"removed": True}


def raw_get(port: int, target: bytes) -> tuple[int, dict[str, str], bytes]:
    """GET ``target`` exactly as given (no client normalises it); status, headers, body."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=target,
        headers=[("Host", f"127.0.0.1:{port}"), ("Connection", "close")],
    )
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"//evil.example/x", "/%2Fevil.example/x"),
        (b"http://evil.example/y", "/y"),
        (b"/%2F%2Fevil.example/z", "/%2F/evil.example/z"),
    ],
)
def test_location_is_a_path_on_this_host(proxied: Proxied, target: bytes, expected: str) -> None:
    """On a catch-all route, Location is never another host's URL, and reaches the same key."""
    port = proxied.direct.port
    status, headers, _ = raw_get(port, target)
    assert status == 202
    parts = urlsplit(headers["location"])
    assert headers["location"] == expected
    assert (parts.scheme, parts.netloc) == ("", "")
    again = headers["location"].encode()
    for _ in range(20):
        status, headers, body = raw_get(port, again)
        # A different key would start a computation of its own: "fwd=miss" without "collapsed".
        assert re.search(r"; (hit|fwd=miss; collapsed)", headers["cache-status"])
        if status != 202:
            break
    assert status == 200
    assert body.startswith(b"<p>anything ")


@pytest.mark.parametrize(
    ("root_path", "url", "expected"),
    [
        ("", "/a?b=1", "/a?b=1"),
        ("/app", "/a", "/app/a"),
        ("", "//evil.example/x", "/%2Fevil.example/x"),
        ("/app", "//x", "/app//x"),
        ("", "x", "/x"),
        ("/a b", "/c", "/a%20b/c"),
    ],
)
def test_location_of_url(root_path: str, url: str, expected: str) -> None:
    """location() prefixes the mount point, escapes it, and never starts with // or a scheme."""
    assert location({"root_path": root_path}, url) == expected
