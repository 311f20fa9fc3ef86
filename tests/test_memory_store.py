"""MemoryStore: ttl expiry, LRU bounds, leases and notices within one process."""

from __future__ import annotations

import pytest
import trio

from workerless import MemoryStore, Notice


async def test_ttl_expiry(autojump_clock: trio.abc.Clock) -> None:
    """A value is served until its ttl passes, with its remaining ttl, then it is gone."""
    store = MemoryStore()
    await store.set("k", b"v", ttl=10)
    await trio.sleep(4)
    entry = await store.get("k")
    assert entry is not None
    assert entry.value == b"v"
    assert entry.ttl == pytest.approx(6)
    await trio.sleep(6.5)
    assert await store.get("k") is None
    assert store.size == 0


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
    await store.set("huge", b"x" * 500, 60)
    assert await store.get("huge") is None
    assert store.nbytes <= 100


async def test_delete_and_delete_prefix() -> None:
    """delete removes one key; delete_prefix removes exactly the keys under a prefix."""
    store = MemoryStore()
    for key in ("/f/a", "/f/b", "/g/a"):
        await store.set(key, b"v", 60)
    assert await store.delete("/f/a")
    assert not await store.delete("/f/a")
    assert await store.delete_prefix("/f/") == 1
    assert await store.get("/g/a") is not None


async def test_lease_is_exclusive_until_released_or_expired(autojump_clock: trio.abc.Clock) -> None:
    """One token holds a lease; another cannot take it until release or expiry."""
    store = MemoryStore()
    assert await store.acquire_lease("k", "one", ttl=5)
    assert not await store.acquire_lease("k", "two", ttl=5)
    await store.release_lease("k", "two")  # not the holder: no effect
    assert not await store.acquire_lease("k", "two", ttl=5)
    assert await store.renew_lease("k", "one", ttl=5)
    assert not await store.renew_lease("k", "two", ttl=5)
    await trio.sleep(6)
    assert await store.acquire_lease("k", "two", ttl=5)
    await store.release_lease("k", "two")
    assert await store.acquire_lease("k", "three", ttl=5)


async def test_notice_wakes_watchers_of_that_key_only() -> None:
    """publish wakes every watch registered on the key and no other."""
    store = MemoryStore()
    with store.watch("k") as first, store.watch("k") as second, store.watch("other") as other:
        await store.publish(Notice("k", "stored"))
        with trio.fail_after(1):
            assert (await first.wait()).outcome == "stored"
            assert (await second.wait()).key == "k"
        with trio.move_on_after(0.05) as scope:
            await other.wait()
        assert scope.cancelled_caught
    assert not store._watches


def test_bounds_must_be_positive() -> None:
    """Nonsense bounds are refused at construction."""
    with pytest.raises(ValueError):
        MemoryStore(max_entries=0)
