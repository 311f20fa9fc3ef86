"""NearCache: the bounded, self-expiring copy of a shared store's recent values."""

from __future__ import annotations

import trio

from workerless import Entry
from workerless._near import NearCache

MIB = 1024 * 1024


async def test_many_large_values_stay_within_the_bounds_and_expire_untouched(
    autojump_clock: trio.abc.Clock,
) -> None:
    """4,000 distinct 256 KB values: never more than max_bytes held; near_ttl later, with no
    entry touched again, nothing is held."""
    near = NearCache(1.0, max_bytes=32 * MIB, max_value_bytes=4 * MIB)
    value = b"x" * 256 * 1024  # one object: the test itself stays small
    for n in range(4000):
        near.put(f"/fragment/{n}", Entry(value, 300))
        assert near.nbytes <= 32 * MIB
        await trio.sleep(0.0001)
    assert near.nbytes > 16 * MIB
    await trio.sleep(1.0)
    near.put("/other", Entry(b"v", 300))  # any later use sweeps; no timer needed
    assert len(near) == 1 and near.nbytes == len("/other") + 1


async def test_entries_are_bounded_in_number_least_recently_used_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Past max_entries the least recently used entry goes; an oversized value never enters."""
    near = NearCache(60, max_entries=2, max_value_bytes=10)
    near.put("a", Entry(b"1", 300))
    near.put("b", Entry(b"2", 300))
    assert near.get("a") is not None
    near.put("c", Entry(b"3", 300))
    assert near.get("b") is None and near.get("a") is not None
    near.put("big", Entry(b"x" * 11, 300))
    assert near.get("big") is None


async def test_an_entry_never_outlives_its_store_ttl_nor_near_ttl(
    autojump_clock: trio.abc.Clock,
) -> None:
    """An entry goes at the sooner of near_ttl and its remaining ttl in the shared store."""
    near = NearCache(5)
    near.put("short", Entry(b"v", 1))
    near.put("long", Entry(b"v", 300))
    await trio.sleep(1.5)
    assert near.get("short") is None and near.get("long") is not None
    near.put("long", Entry(b"v", 300))  # put again: its time starts over
    await trio.sleep(4)
    assert near.get("long") is not None
    await trio.sleep(1.5)
    assert near.get("long") is None and near.nbytes == 0
