"""Queues of JSON jobs over HTTP on Redis Streams: presque's API, with leases and held takes.

``Queues(app)`` mounts the API and page in a QuartTrio app; ``workerless.queue:app`` is a
ready app (``hypercorn --worker-class trio workerless.queue:app``), configured when the
server starts, so that importing the engine needs no settings; `QueueEngine` is the Python
API underneath.
"""

from __future__ import annotations

from ._app import ReadyApp
from ._engine import QueueEngine
from ._http import Queues
from ._job import Enqueued, Job, JobNotFound, JobStatus, LeaseLost, QueueInfo
from ._settings import QueueSettings

__all__ = [
    "Enqueued",
    "Job",
    "JobNotFound",
    "JobStatus",
    "LeaseLost",
    "QueueEngine",
    "QueueInfo",
    "QueueSettings",
    "Queues",
    "app",
]


app = ReadyApp()
