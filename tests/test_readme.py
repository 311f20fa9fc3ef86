"""The README's example runs as written."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import httpx
import trio
from servers import ROOT, serve_in_process


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
