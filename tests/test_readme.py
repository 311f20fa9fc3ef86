"""The README's example runs as written."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from apps.contract_app import make_app
from servers import ROOT, serve_in_process

import workerless


async def test_readme_example_serves_skeleton_and_fragments(tmp_path: Path) -> None:
    """The Example section's app serves a skeleton with two placeholders and their fragments."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Example\n\n```python\n(.*?)```", readme, re.S)
    assert match is not None
    source = tmp_path / "readme_example.py"
    source.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location("readme_example", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with trio.fail_after(20):
        async with serve_in_process(module.app) as url, httpx.AsyncClient(base_url=url) as client:
            page = await client.get("/")
            fragment = await client.get("/fragment/a")
    assert page.text.count("data-fragment=") == 2
    assert "/workerless/static/workerless.js" in page.text
    assert fragment.text == "<p>result for a</p>"
    assert fragment.headers["cache-status"] == "workerless; fwd=miss; stored"


async def test_readme_cacher_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The Cacher section's snippet runs as written: one computation, the typed listener sees
    the hit of a second fetch."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"### `Cacher\(.*?```python\n(.*?)```", readme, re.S)
    assert match is not None
    calls: list[str] = []

    async def perform_slow_external_call(query: str) -> str:
        calls.append(query)
        return f"result for {query}"

    body = [f"    {line}" for line in match.group(1).splitlines()]
    body += [
        "        await cacher.fetch(f'find:{query}', lambda: perform_slow_external_call(query))"
    ]
    body += ["    return value"]
    namespace: dict[str, Any] = dict(vars(workerless))
    namespace.update(query="a", perform_slow_external_call=perform_slow_external_call)
    exec("async def snippet():\n" + "\n".join(body), namespace)  # the README's own text
    with trio.fail_after(5):
        value = await namespace["snippet"]()
    assert value == "result for a"
    assert calls == ["a"]
    assert capsys.readouterr().out == "hit find:a\n"


async def test_readme_freshness_snippet_registers_its_windows() -> None:
    """The Freshness section's route registers with the ttl and windows it shows, and serves."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Freshness.*?```python\n(.*?)```", readme, re.S)
    assert match is not None
    app, workerless_, _ = make_app()

    async def render_prices() -> str:
        return "<p>prices</p>"

    namespace: dict[str, Any] = {"workerless": workerless_, "render_prices": render_prices}
    exec(match.group(1), namespace)  # the README's own text
    route = app.view_functions["prices"].__self__
    assert (route.ttl, route.stale, route.stale_if_error) == (60, 600, 86400)
    with trio.fail_after(10):
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/prices")
    assert response.text == "<p>prices</p>"


@pytest.mark.parametrize(
    ("name", "function"),
    [
        ("Workerless", workerless.Workerless.__init__),
        ("Cacher", workerless.Cacher.__init__),
        ("WorkerlessMiddleware", workerless.WorkerlessMiddleware.__init__),
    ],
)
def test_readme_signature_headings_match_the_code(name: str, function: Any) -> None:
    """The README's `Name(...)` signature line lists the same parameters as the code, in order."""
    readme = (ROOT / "README.md").read_text()
    heading = re.search(rf"^(?:#+ )?`{name}\((.*)\)`", readme, re.M)
    assert heading is not None, f"no heading for {name}"
    written = [p.split("=")[0].strip() for p in heading.group(1).split(",")]
    written = [p for p in written if p not in ("*", "")]
    actual = [p for p in inspect.signature(function).parameters if p != "self"]
    assert written == actual
