from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import RedisServer, redis_server


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """One real redis-server for the whole session, on a free port."""
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each contract test runs once per store: the embedded memory store and a real Redis."""
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis")
    # A fresh database number per test would be nicer, but a flush keeps the server shared.
    import redis as redis_py

    redis_py.Redis.from_url(server.url).flushdb()
    return server.url
