"""Every kind of fragment answer passes REDbot (mnot's HTTP linter) on caching and validation."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import trio
from apps.contract_app import make_app
from servers import serve_in_process

REDBOT = shutil.which("redbot") or str(Path(sys.executable).with_name("redbot"))


async def notes(url: str) -> tuple[int, list[dict[str, str]]]:
    """REDbot's verdict on ``url``: the status it saw and its notes (from its HAR output)."""
    done = await trio.run_process([REDBOT, "-o", "har", url], capture_stdout=True)
    entry = json.loads(done.stdout)["log"]["entries"][0]
    return entry["response"]["status"], entry["_red_messages"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/quick/hit", 200), ("/quick/miss", 200), ("/sleep/pending?t=30", 202), ("/boom", 502)],
)
async def test_redbot_finds_no_caching_or_validation_problem(path: str, status: int) -> None:
    """A hit, a miss, a 202 and a 502: no WARN or BAD note about caching or validation."""
    app, _workerless, _probe = make_app(deadline=0.5, hard_limit=60)
    async with serve_in_process(app) as url:
        with trio.fail_after(60):
            if path == "/quick/hit":
                await trio.to_thread.run_sync(_get, url + path)
            seen, found = await notes(url + path)
    problems = [
        f"{n['level']} {n['note_id']}: {n['summary']}"
        for n in found
        if n["category"] in ("CACHING", "VALIDATION") and n["level"] in ("WARN", "BAD")
    ]
    assert seen == status
    assert problems == []


def _get(url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
