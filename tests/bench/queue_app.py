"""The queue benchmark's server: the queue API at / and a bare route beside it, one process."""

from __future__ import annotations

from quart_trio import QuartTrio

from workerless.queue import Queues

app = QuartTrio(__name__, static_folder=None)
Queues(app)


@app.get("/bare")
async def bare() -> str:
    """The baseline: a route that does nothing, on the same server."""
    return "ok"
