"""The README's "Queues" section runs as written: its Python worker and its sh/curl worker."""

from __future__ import annotations

import os
import re
import secrets
import stat
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from queue_helpers import TOKEN, queue_api
from servers import ROOT, RedisServer

import workerless

pytestmark = pytest.mark.redis


def section_blocks(language: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Queues\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


async def test_readme_python_worker_runs_jobs(redis: RedisServer) -> None:
    """The README's MailWorker takes a posted job over a held request, runs work on its JSON,
    and acknowledges it; SIGTERM's stop ends it."""
    (source,) = section_blocks("python")
    sent: list[tuple[str, str]] = []

    async def send_mail(to: str, subject: str) -> None:
        sent.append((to, subject))

    namespace: dict[str, Any] = {"send_mail": send_mail, "workerless": workerless}
    exec(source, namespace)  # the README's own text
    queue = f"mail{secrets.token_hex(3)}"
    with trio.fail_after(20):
        async with queue_api(redis.url) as client:
            worker = namespace["MailWorker"](str(client.base_url), queue, token=TOKEN, wait=5)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run)
                await trio.sleep(0.3)
                await client.post(f"/q/{queue}", json={"to": "a@example.org", "subject": "hi"})
                # The worker runs in this process but reports only to the server: ask it.
                while not (await client.get(f"/j/{queue}")).json()["counts"].get("done"):  # noqa: ASYNC110
                    await trio.sleep(0.05)
                worker.stop()
    assert sent == [("a@example.org", "hi")]


async def test_readme_shell_worker_runs_jobs(redis: RedisServer, tmp_path: Path) -> None:
    """The README's sh/curl worker takes jobs with held requests, acknowledges the ones its
    handler did, and reports the one it failed (dead, with max_attempts=1)."""
    sh = next(block for block in section_blocks("sh") if block.startswith("#!/bin/sh"))
    script = tmp_path / "worker.sh"
    script.write_text(sh)
    handle = tmp_path / "handle"
    handle.write_text("#!/bin/sh\ntee -a handled.txt | grep -qv '\"fail\":true'\n")
    handle.chmod(handle.stat().st_mode | stat.S_IEXEC)
    queue = f"sh{secrets.token_hex(3)}"
    with trio.fail_after(30):
        async with queue_api(redis.url, max_attempts=1) as client:
            env = {**os.environ, "QUEUE_SERVER": str(client.base_url).rstrip("/"),
                   "QUEUE": queue, "WORKERLESS_QUEUE_TOKEN": TOKEN}  # fmt: skip
            async with trio.open_nursery() as nursery:
                run = partial(trio.run_process, ["sh", str(script)], cwd=tmp_path, env=env,
                              check=False)  # fmt: skip
                proc = await nursery.start(run)
                await client.post(f"/q/{queue}", json={"n": 1})
                await client.post(f"/q/{queue}", json={"n": 2, "fail": True})
                while True:
                    info = (await client.get(f"/j/{queue}")).json()
                    if info["counts"].get("done") == 1 and info["dead"] == 1:
                        break
                    await trio.sleep(0.05)
                proc.kill()
    assert (info["length"], info["pending"]) == (0, 0)
    assert (tmp_path / "handled.txt").read_text().count('"job": ') == 2
