"""Workers for the queue tests, run by `workerless worker`: they write what they did to files.

``QUEUE_TEST_DIR`` names the folder: each start of a job appends its id and the worker's pid
to ``started``, each finish its id to ``done``; a body {"seconds": N} makes the job's first
attempt take N s; {"fail": true} raises.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

import workerless
from workerless.queue import Job


def _append(name: str, line: str) -> None:
    folder = Path(os.environ["QUEUE_TEST_DIR"])
    with (folder / name).open("a") as out:
        out.write(line + "\n")


class Recorder(workerless.Worker):
    """Records each job's start and end; sleeps or fails as its body says."""

    async def work(self, job: Job) -> None:
        data = job.json()
        _append("started", f"{job.id} {os.getpid()}")
        if job.attempt == 1:
            await trio.sleep(float(data.get("seconds", 0)))
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        _append("done", job.id)

    async def fail(self, job: Job, error: BaseException) -> None:
        _append("failed", f"{job.id} {error}")
