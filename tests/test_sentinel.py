"""RedisStore through Redis Sentinel: one master, one replica and one sentinel started by the
test; the master is killed, the sentinel promotes the replica, and serving goes on."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis as redis_py
import trio
from servers import RedisServer, SentinelSetup, redis_sentinel
from test_fleet import client, computations, start_servers, unique
from test_store_contract import plant_in_redis

from workerless import RedisStore, Store
from workerless.testing import Plant, StoreContract, running_store

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A master, its replica and a sentinel for this module's contract suite (never killed)."""
    with redis_sentinel(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


class TestSentinelStore(StoreContract):
    """The whole store contract through a redis+sentinel:// URL."""

    @pytest.fixture
    def url(self, sentinel: SentinelSetup) -> str:
        self.master = redis_py.Redis(port=sentinel.master_port, socket_timeout=5)
        self.master.flushdb()
        return sentinel.url

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[Store]:
        async with running_store(RedisStore(url, max_value_bytes=64 * 1024)) as store:
            yield store

    @pytest.fixture
    async def peer(self, url: str) -> AsyncIterator[Store | None]:
        async with running_store(RedisStore(url, near_ttl=60)) as store:
            yield store

    async def plant(self, store: Store, what: Plant, key: str) -> None:
        assert isinstance(store, RedisStore)
        plant_in_redis(self.master, store, what, key)


async def test_a_failover_is_served_through_and_caching_resumes(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Kill the master under a server using redis+sentinel://: every answer meanwhile is a
    degraded 200 (or a 503), never another 5xx; once the replica is promoted, values are
    stored and hit again, and a store opened on the same URL reaches the new master."""
    counter = redis_py.Redis.from_url(redis.url)
    with ExitStack() as stack:
        setup = stack.enter_context(redis_sentinel(tmp_path / "redis"))
        (server,) = start_servers(
            stack,
            tmp_path,
            [0.05],
            store_url=setup.url,
            counter_url=redis.url,
            WORKERLESS_LEASE="5",
        )
        statuses: list[int] = []
        degraded = 0
        async with client() as http:

            async def get(name: str) -> httpx.Response:
                nonlocal degraded
                answer = await http.get(f"{server.url}/fragment/{name}")
                statuses.append(answer.status_code)
                degraded += "store-unavailable" in answer.headers.get("Cache-Status", "")
                return answer

            with trio.fail_after(60):
                before = unique("before")
                await get(before)
                assert "hit" in (await get(before)).headers["Cache-Status"]

                setup.master.send_signal(signal.SIGKILL)
                setup.master.wait(5)
                resumed = None
                for attempt in range(300):
                    name = unique(f"during-{attempt}")
                    await get(name)
                    await get(before)
                    again = await get(name)
                    if (
                        setup.master_address()[1] == setup.replica_port
                        and "hit" in (again.headers["Cache-Status"])
                    ):
                        resumed = name
                        break
                    await trio.sleep(0.1)
        assert resumed is not None, "caching never resumed on the promoted replica"
        assert set(statuses) <= {200, 503}, statuses
        assert degraded > 0  # the outage was seen, and served through in degraded mode
        assert computations(counter, resumed) == 1

        with trio.fail_after(10):
            async with running_store(RedisStore(setup.url)) as store:
                assert await store.set("/after", b"v", 30)
        promoted = redis_py.Redis(port=setup.replica_port)
        assert promoted.get(store.keys.value("/after")) == b"v"
