"""NearCache: recent values of a shared store kept in this process for a short while."""

from __future__ import annotations

from collections import OrderedDict

import trio

from ._store import Entry

__all__ = ["NearCache"]


class NearCache:
    """Values read from (or written to) a shared store, served here for up to ``max_age`` s.

    An entry never outlives its lifetime in the shared store, so expiry is exact; an entry
    dropped by an invalidation elsewhere is dropped here when that invalidation is announced.
    The owner decides when the cache may be trusted at all (the announcements must flow).
    Touched from the trio thread only.
    """

    def __init__(self, max_age: float, *, max_entries: int = 10_000) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        # key -> (value, valid until, expires in the shared store), in trio time
        self._entries: OrderedDict[str, tuple[bytes, float, float | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        item = self._entries.get(key)
        if item is None:
            return None
        value, valid_until, expires = item
        now = trio.current_time()
        if now >= valid_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return Entry(value, None if expires is None else expires - now)

    def put(self, key: str, entry: Entry) -> None:
        if self.max_age <= 0:
            return
        now = trio.current_time()
        expires = None if entry.ttl is None else now + entry.ttl
        valid_until = now + self.max_age if expires is None else min(now + self.max_age, expires)
        self._entries[key] = (entry.value, valid_until, expires)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def drop_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
