"""A streamed page through a real nginx with the README's configuration: fragments arrive as
they complete, not buffered to the end."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from servers import free_port, hypercorn, nginx, readme_nginx_blocks

TIMEOUT = 10.0
_runs = itertools.count()


@dataclass
class Proxied:
    direct: str
    readme: str  # the README's "Streamed page" configuration
    default: str  # nginx's defaults: HTTP/1.0 upstream, buffering on


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """The test app behind one nginx: the README's server block and a default one."""
    logs = tmp_path_factory.mktemp("page-nginx")
    # The README's "Streamed page" is a part of its "Concepts and API" section.
    (block,) = [b for b in readme_nginx_blocks("Concepts and API") if "upstream pages" in b]
    listen = [free_port(), free_port()]
    with hypercorn("apps.page_app:app", logs) as direct:
        assert block.count("listen 80;") == 1 and "127.0.0.1:8000" in block
        readme = block.replace("listen 80;", f"listen 127.0.0.1:{listen[0]};")
        readme = readme.replace("127.0.0.1:8000", f"127.0.0.1:{direct.port}")
        default = f"""
server {{
    listen 127.0.0.1:{listen[1]};
    location / {{ proxy_pass http://127.0.0.1:{direct.port}; }}
}}
"""
        with nginx(readme + default, logs / "nginx", ports=listen):
            yield Proxied(direct.url, *(f"http://127.0.0.1:{port}" for port in listen))
        direct.kill()  # nothing about its shutdown is tested here


def release(proxied: Proxied, name: str) -> None:
    assert httpx.post(f"{proxied.direct}/release/{name}", timeout=TIMEOUT).status_code == 200


def test_fragments_stream_through_nginx_as_they_complete(proxied: Proxied) -> None:
    """Through the README's nginx config the skeleton arrives before any fragment is done, and
    each fragment arrives once it is done, before the next one is even released."""
    run = f"n{next(_runs)}"
    arrived = ""
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("GET", f"{proxied.readme}/page/{run}?names=a,b") as response,
    ):
        assert response.status_code == 200
        assert "x-accel-buffering" not in response.headers  # nginx takes it for itself
        chunks = response.iter_raw()
        for step in ("</template>", '<div slot="wl-1"', '<div slot="wl-0"', "</html>"):
            while step not in arrived:
                arrived += next(chunks).decode()
            if step == "</template>":
                assert "<div slot=" not in arrived
                release(proxied, f"{run}-b")
            elif step == '<div slot="wl-1"':
                assert '<div slot="wl-0"' not in arrived
                release(proxied, f"{run}-a")
        for _ in chunks:
            pass
    assert re.findall(r'<div slot="(wl-\d)"', arrived) == ["wl-1", "wl-0"]


def test_http10_upstream_gets_the_whole_page(proxied: Proxied) -> None:
    """nginx's default (HTTP/1.0 to hypercorn) gets the whole page with its length at the end,
    never a response that hangs until nginx's read timeout."""
    run = f"n{next(_runs)}"
    release(proxied, f"{run}-a")
    release(proxied, f"{run}-b")
    response = httpx.get(f"{proxied.default}/page/{run}?names=a,b&deadline=3", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text.rstrip().endswith("</html>")
    assert response.text.count('data-fragment-state="loaded"') == 2
