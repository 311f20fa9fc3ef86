"""One member of a fleet of hypercorn servers sharing a Redis store, for tests/test_fleet.py.

Run as ``apps.fleet_app:app``.  Settings come from the environment: ``WORKERLESS_*`` for
workerless, ``FLEET_COUNTER_URL`` for the Redis that counts computations (kept apart from the
store, so that stopping the store's Redis does not break the computation), ``FLEET_SLEEP``
for how long each computation takes.
"""

from __future__ import annotations

import os
from typing import Any

import redis
import trio
from quart import jsonify, request
from quart_trio import QuartTrio

from workerless import Workerless

SLEEP = float(os.environ.get("FLEET_SLEEP", "1"))
counter = redis.Redis.from_url(os.environ["FLEET_COUNTER_URL"], socket_timeout=5)

app = QuartTrio(__name__)
workerless = Workerless(app)


def counter_key(name: str) -> str:
    return f"fleet:computations:{name}"


@workerless.fragment("/fragment/<name>")
async def fragment(name: str) -> Any:
    # Counted before the sleep, so the tests see when a computation has started.
    number = await trio.to_thread.run_sync(counter.incr, counter_key(name))
    await trio.sleep(SLEEP)
    return jsonify(name=name, computation=number, pid=os.getpid())


@app.post("/admin/invalidate")
async def invalidate() -> Any:
    if "prefix" in request.args:
        return jsonify(removed=await workerless.invalidate_prefix(request.args["prefix"]))
    return jsonify(removed=await workerless.invalidate(request.args["url"]))
