"""The store contract (workerless.testing.StoreContract) run against every store we have:
MemoryStore, RedisStore on a real redis-server, and a tiny store written here."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as redis_py
import trio
from servers import RedisServer

from workerless import Entry, Lease, MemoryStore, Notice, RedisStore, Store
from workerless._store import MAX_LEASE, is_lease_token
from workerless.testing import Plant, StoreContract, running_store


class DictStore(Store):
    """The smallest store that keeps the contract: one process, plain dicts, no bounds."""

    def __init__(self) -> None:
        super().__init__(max_value_bytes=1024)
        self.values: dict[str, tuple[bytes, float]] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.counter = 0

    async def get(self, key: str) -> Entry | None:
        value, expires = self.values.get(key, (b"", -math.inf))
        left = expires - trio.current_time()
        return Entry(value, left) if left > 0 and len(value) <= self.max_value_bytes else None

    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        if ttl <= 0:
            await self.delete(key)
            return False
        if (epoch is not None and epoch != self.counter) or len(value) > self.max_value_bytes:
            return False
        self.values[key] = (value, trio.current_time() + ttl)
        return True

    async def epoch(self, key: str) -> int:
        return self.counter

    async def delete(self, key: str) -> bool:
        self.counter += 1
        return self.values.pop(key, None) is not None

    async def delete_prefix(self, prefix: str) -> int:
        self.counter += 1
        doomed = [key for key in self.values if key.startswith(prefix)]
        for key in doomed:
            del self.values[key]
        return len(doomed)

    async def acquire_lease(self, key: str, token: str, ttl: float) -> Lease:
        self._check_lease_request(token, ttl)
        now = trio.current_time()
        holder, expires = self.leases.get(key, (token, now))
        foreign = not is_lease_token(holder) or expires - now > MAX_LEASE
        if holder != token and expires > now and not foreign:
            return Lease(False, holder, expires - now)
        self.leases[key] = (token, now + ttl)
        return Lease(True, token, ttl)

    async def renew_lease(self, key: str, token: str, ttl: float) -> bool:
        holder, expires = self.leases.get(key, ("", 0.0))
        if holder != token or expires <= trio.current_time():
            return False
        self.leases[key] = (token, trio.current_time() + ttl)
        return True

    async def release_lease(self, key: str, token: str) -> None:
        if self.leases.get(key, ("", 0.0))[0] == token:
            del self.leases[key]
            self._deliver(Notice(key, "abandoned", "lease released", token=token))

    async def publish(self, notice: Notice) -> None:
        self._deliver(notice)


def plant_lease(leases: dict[str, tuple[str, float]], what: Plant, key: str) -> bool:
    """Plant a foreign lease into an in-process lease table; False for other kinds of data."""
    now, token = trio.current_time(), "0" * 32
    planted = {
        "foreign lease": ("x", now + 3600),
        "eternal lease": (token, math.inf),
        "overlong lease": (token, now + MAX_LEASE + 60),
    }
    if what not in planted:
        return False
    leases[key] = planted[what]
    return True


class TestDictStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        async with running_store(DictStore()) as store:
            yield store

    async def plant(self, store: Store, what: Plant, key: str) -> None:
        assert isinstance(store, DictStore)
        if what == "oversized value":
            store.values[key] = (b"x" * 2000, trio.current_time() + 30)
        elif not plant_lease(store.leases, what, key):
            await super().plant(store, what, key)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        async with running_store(MemoryStore(max_value_bytes=64 * 1024)) as store:
            yield store

    async def plant(self, store: Store, what: Plant, key: str) -> None:
        assert isinstance(store, MemoryStore)
        if not plant_lease(store._leases, what, key):
            await super().plant(store, what, key)


@pytest.mark.redis
class TestRedisStore(StoreContract):
    @pytest.fixture
    def url(self, redis: RedisServer) -> str:
        redis_py.Redis.from_url(redis.url).flushdb()
        self.raw_url = redis.url
        return redis.url

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
        with redis_py.Redis.from_url(self.raw_url) as raw:
            plant_in_redis(raw, store, what, key)


def plant_in_redis(raw: Any, store: RedisStore, what: Plant, key: str) -> None:
    """Write ``what`` where ``store`` keeps ``key``, through the redis-py client ``raw``."""
    lease, value = store.keys.lease(key), store.keys.value(key)
    if what == "foreign lease":
        raw.set(lease, "x", px=3_600_000)
    elif what == "eternal lease":
        raw.set(lease, "0" * 32)
    elif what == "overlong lease":
        raw.set(lease, "0" * 32, px=int((MAX_LEASE + 60) * 1000))
    elif what == "wrong-typed value":
        raw.rpush(value, "a")
    elif what == "oversized value":
        raw.set(value, b"x" * (store.max_value_bytes + 1), px=30_000)
    else:
        raw.set(store.keys.epoch(key), "x")
