"""NearCache: recent values of a shared store kept in this process for a short while."""

from __future__ import annotations

from collections import OrderedDict, deque

import trio

from ._store import Entry

__all__ = ["NearCache"]


class NearCache:
    """Values read from (or written to) a shared store, served here for up to ``max_age`` s.

    Bounded by ``max_bytes`` (keys plus values) and ``max_entries``, least recently used out
    first; a value over ``max_value_bytes`` never enters.  Every entry is gone ``max_age`` s
    after it was put, touched or not: each `put`, `get` and size query first drops the
    entries whose time has passed, oldest first (amortised O(1), no timer task).  An entry
    never outlives its lifetime in the shared store.  The owner decides when the cache may be
    trusted at all (invalidations must reach it).  Touched from the trio thread only.
    """

    def __init__(
        self,
        max_age: float,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 32 * 1024 * 1024,
        max_value_bytes: int | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("near cache bounds must be positive")
        self.max_age = max_age
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_value_bytes = max_bytes if max_value_bytes is None else max_value_bytes
        # key -> (value, valid until, expires in the shared store), in trio time
        self._entries: OrderedDict[str, tuple[bytes, float, float | None]] = OrderedDict()
        # (put time + max_age, key) in put order: the expiry sweep's queue
        self._expiries: deque[tuple[float, str]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        self._sweep(trio.current_time())
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes of keys and values held now."""
        self._sweep(trio.current_time())
        return self._bytes

    def get(self, key: str) -> Entry | None:
        now = trio.current_time()
        self._sweep(now)
        item = self._entries.get(key)
        if item is None:
            return None
        value, valid_until, expires = item
        if now >= valid_until:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return Entry(value, None if expires is None else expires - now)

    def put(self, key: str, entry: Entry) -> None:
        if self.max_age <= 0:
            return
        now = trio.current_time()
        self._sweep(now)
        self._remove(key)
        size = len(key) + len(entry.value)
        if len(entry.value) > self.max_value_bytes or size > self.max_bytes:
            return
        expires = None if entry.ttl is None else now + entry.ttl
        until = now + self.max_age
        valid_until = until if expires is None else min(until, expires)
        self._entries[key] = (entry.value, valid_until, expires)
        self._expiries.append((until, key))
        if len(self._expiries) > 4 * self.max_entries:
            self._compact()
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def drop(self, key: str) -> None:
        self._remove(key)

    def drop_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            self._remove(key)

    def clear(self) -> None:
        self._entries.clear()
        self._expiries.clear()
        self._bytes = 0

    def _sweep(self, now: float) -> None:
        # Puts happen in time order, so the queue's head is always the oldest put.  A record
        # may be stale (the key was put again or dropped): the entry's own time decides.
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, key = expiries.popleft()
            item = self._entries.get(key)
            if item is not None and item[1] <= now:
                self._remove(key)

    def _compact(self) -> None:
        # Stale records of keys put again or dropped pile up under churn: keep one per entry.
        # An entry is useless past its valid_until, so that serves as its record's time.
        records = sorted((item[1], key) for key, item in self._entries.items())
        self._expiries = deque(records)

    def _remove(self, key: str) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self._bytes -= len(key) + len(item[0])
