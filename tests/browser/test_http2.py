"""Over HTTP/2 a page's slow fragments share one connection and all run at once."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect
from servers import free_port, hypercorn, nginx, readme_nginx_blocks

pytestmark = pytest.mark.browser

APP = "apps.h2_app:app"
FRAGMENTS = 12
SECONDS = 2.0
ENV = {"WORKERLESS_STORE": "memory://", "H2_FRAGMENT_SECONDS": str(SECONDS)}


def nginx_h2_config(listen: int, upstream: int, cert: str, key: str) -> str:
    """The README's HTTP/2 nginx block and the upstream it names, on the test's ports and files."""
    (upstream_block,) = re.findall(
        r"^upstream fragments \{.*?^\}", readme_nginx_blocks("Behind a proxy")[0], re.S | re.M
    )
    (server_block,) = readme_nginx_blocks("HTTP/2")
    replacements = {
        "127.0.0.1:8000": f"127.0.0.1:{upstream}",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{listen} ssl http2;",
        "/etc/ssl/example/cert.pem": cert,
        "/etc/ssl/example/key.pem": key,
    }
    config = upstream_block + "\n" + server_block
    for example, value in replacements.items():
        assert config.count(example) == 1, example
        config = config.replace(example, value)
    return config


@pytest.fixture(scope="module", params=["hypercorn", "nginx"])
def h2_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The page over TLS (a self-signed certificate made here) offering h2: from hypercorn
    itself, or from the README's nginx block in front of a plain hypercorn."""
    directory = tmp_path_factory.mktemp("h2")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    if request.param == "hypercorn":
        args = ("--certfile", str(cert), "--keyfile", str(key))
        with hypercorn(APP, directory, env=ENV, args=args) as server:
            yield f"https://127.0.0.1:{server.port}"
            server.kill()
        return
    listen = free_port()
    with hypercorn(APP, directory, env=ENV) as server:
        config = nginx_h2_config(listen, server.port, str(cert), str(key))
        with nginx(config, directory / "nginx", ports=[listen]):
            yield f"https://127.0.0.1:{listen}"
        server.kill()


def test_twelve_slow_fragments_load_in_about_one_fragment_time_over_h2(
    browser: Browser, h2_url: str
) -> None:
    """12 fragments of 2 s each all arrive over h2 within 1.7x one fragment's time."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(h2_url + "/")
        expect(page.locator('[data-fragment-state="loaded"]')).to_have_count(FRAGMENTS)
        entries = page.evaluate(
            """() => performance.getEntriesByType("resource")
                .filter((e) => new URL(e.name).pathname.startsWith("/slow/"))
                .map((e) => ({protocol: e.nextHopProtocol, start: e.startTime,
                              end: e.responseEnd}))"""
        )
    finally:
        context.close()
    assert len(entries) == FRAGMENTS
    assert {entry["protocol"] for entry in entries} == {"h2"}
    elapsed = (max(e["end"] for e in entries) - min(e["start"] for e in entries)) / 1000
    # Over HTTP/1.1 (6 connections per host) the same page takes two rounds: about 2x.
    assert SECONDS <= elapsed < 1.7 * SECONDS
