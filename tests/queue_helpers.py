"""The queue service served in-process for tests, with an httpx client that carries the token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from quart_trio import QuartTrio
from servers import serve_in_process

from workerless.queue import Queues

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


@asynccontextmanager
async def queue_api(redis_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh QuartTrio app with the queue blueprint at /, served on a free port."""
    app = QuartTrio(__name__)
    settings.setdefault("token", TOKEN)
    Queues(app, url=redis_url, **settings)
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30, limits=LIMITS) as client,
    ):
        yield client
