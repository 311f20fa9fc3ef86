"""MemoryStore beyond the store contract (test_store_contract.py): its LRU bounds and URL."""

from __future__ import annotations

import pytest
import trio

from workerless import ConfigurationError, MemoryStore, store_from_url


async def test_expired_entries_are_dropped_when_touched(autojump_clock: trio.abc.Clock) -> None:
    """A value is served with its remaining ttl until it passes, then it no longer counts."""
    store = MemoryStore()
    await store.set("k", b"v", ttl=10)
    await trio.sleep(4)
    entry = await store.get("k")
    assert entry is not None and entry.ttl == pytest.approx(6)
    await trio.sleep(6.5)
    assert await store.get("k") is None
    assert store.size == 0 and store.nbytes == 0


async def test_lru_eviction_by_entries() -> None:
    """Past max_entries the least recently used entry goes first."""
    store = MemoryStore(max_entries=2)
    await store.set("a", b"1", 60)
    await store.set("b", b"2", 60)
    await store.get("a")  # a is now more recent than b
    await store.set("c", b"3", 60)
    assert await store.get("b") is None
    assert await store.get("a") is not None
    assert await store.get("c") is not None


async def test_lru_eviction_by_bytes() -> None:
    """Past max_bytes old entries are evicted; a value larger than the bound is not stored."""
    store = MemoryStore(max_bytes=100)
    await store.set("a", b"x" * 40, 60)
    await store.set("b", b"x" * 40, 60)
    await store.set("c", b"x" * 40, 60)
    assert await store.get("a") is None
    assert store.nbytes <= 100
    assert not await store.set("huge", b"x" * 500, 60)
    assert await store.get("huge") is None
    assert store.nbytes <= 100


def test_bounds_must_be_positive() -> None:
    """Nonsense bounds are refused at construction."""
    for bounds in ({"max_entries": 0}, {"max_bytes": 0}, {"max_value_bytes": 0}):
        with pytest.raises(ValueError):
            MemoryStore(**bounds)


def test_memory_url_sets_the_value_bound() -> None:
    """memory://?max_value_bytes=N bounds values; store_from_url's own bound is the default."""
    store = store_from_url("memory://?max_value_bytes=1000&max_entries=5")
    assert isinstance(store, MemoryStore)
    assert (store.max_value_bytes, store.max_entries) == (1000, 5)
    assert store_from_url("memory://", max_value_bytes=77).max_value_bytes == 77
    with pytest.raises(ConfigurationError, match="max_value_bytes"):
        store_from_url("memory://?max_value=1")
