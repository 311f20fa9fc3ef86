"""MemoryStore: the embedded default store, bounded and LRU-evicted, for one process."""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio

from ._log import fields
from ._store import DEFAULT_MAX_VALUE_BYTES, MAX_LEASE, Entry, Lease, Notice, Store, is_lease_token

__all__ = ["MemoryStore"]

logger = logging.getLogger("workerless")


class MemoryStore(Store):
    """Values in this process's memory, bounded by ``max_entries`` and ``max_bytes``.

    The least recently used entries are evicted first when either bound is passed; expired
    entries are dropped when touched.  Leases and notices work within this process only, so
    several processes each compute a key once: use `RedisStore` to share across processes.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        super().__init__(max_value_bytes=max_value_bytes)
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("MemoryStore bounds must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._leases: dict[str, tuple[str, float]] = {}
        self._epoch = 0

    def __repr__(self) -> str:
        return f"MemoryStore(max_entries={self.max_entries}, max_bytes={self.max_bytes})"

    @property
    def size(self) -> int:
        """How many entries are held now (expired ones included until touched or evicted)."""
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """How many bytes of keys and values are held now."""
        return self._bytes

    async def get(self, key: str) -> Entry | None:
        item = self._entries.get(key)
        if item is None:
            return None
        value, expires = item
        remaining = expires - trio.current_time()
        if remaining <= 0:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return Entry(value, remaining)

    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        if epoch is not None and epoch != self._epoch:
            return False
        if ttl <= 0:
            await self.delete(key)
            return False
        self._remove(key)
        size = len(key) + len(value)
        if len(value) > self.max_value_bytes or size > self.max_bytes:
            logger.warning(
                "%r not stored: %d bytes is over the store's bound",
                key,
                len(value),
                extra=fields(key),
            )
            return False
        self._entries[key] = (value, trio.current_time() + ttl)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))
        return True

    async def epoch(self, key: str) -> int:
        """One counter for every key: any invalidation increases it."""
        return self._epoch

    async def delete(self, key: str) -> bool:
        self._epoch += 1
        return self._remove(key)

    async def delete_prefix(self, prefix: str) -> int:
        self._epoch += 1
        doomed = [k for k in self._entries if k.startswith(prefix)]
        for k in doomed:
            self._remove(k)
        return len(doomed)

    async def acquire_lease(self, key: str, token: str, ttl: float) -> Lease:
        self._check_lease_request(token, ttl)
        now = trio.current_time()
        held = self._leases.get(key)
        if held is not None and held[1] > now and held[0] != token:
            holder, expires = held
            if is_lease_token(holder) and expires - now <= MAX_LEASE:
                return Lease(False, holder, expires - now)
            logger.warning(
                "breaking the foreign lease %.40r on %r", holder, key, extra=fields(key)
            )
        self._leases[key] = (token, now + ttl)
        return Lease(True, token, ttl)

    async def renew_lease(self, key: str, token: str, ttl: float) -> bool:
        held = self._leases.get(key)
        if held is None or held[0] != token:
            return False
        self._leases[key] = (token, trio.current_time() + ttl)
        return True

    async def release_lease(self, key: str, token: str) -> None:
        held = self._leases.get(key)
        if held is not None and held[0] == token:
            del self._leases[key]
            self._deliver(Notice(key, "abandoned", "lease released", token=token))

    async def publish(self, notice: Notice) -> None:
        self._deliver(notice)

    def _remove(self, key: str) -> bool:
        item = self._entries.pop(key, None)
        if item is None:
            return False
        self._bytes -= len(key) + len(item[0])
        return True
