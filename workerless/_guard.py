"""GuardedStore: the one place where a store's errors become degraded service.

The Cacher never talks to a store directly: every call goes through here.  An outage
(`StoreUnavailable`) marks the store down, logs once, and makes every call skip it until a
retry is due (once a second), so requests never queue behind a dead backend.  A refusal that
is not an outage (`StoreError`: a missing permission, a bad script) is logged and answered
like a miss for that one call, without taking the whole store down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import trio

from ._errors import StoreError, StoreUnavailable
from ._events import StoreDown, StoreUp
from ._log import fields, logger
from ._store import Entry, Lease, Notice, Store

__all__ = ["STORE_RETRY_INTERVAL", "GuardedStore"]

T = TypeVar("T")
D = TypeVar("D")
STORE_RETRY_INTERVAL = 1.0  # seconds between attempts to reach a store that went down


class GuardedStore:
    """A `Store` whose calls never raise: each returns a stated fallback when the store fails.

    ``on_change`` is called (from the trio thread) with a `StoreDown` each time the store goes
    from available to down, so whoever waits on the store's notices can stop waiting, and with
    a `StoreUp` when it answers again; each names the key and route of the call that found out.
    """

    def __init__(self, store: Store, on_change: Callable[[StoreDown | StoreUp], None]) -> None:
        self.store = store
        self.available = True
        self._on_change = on_change
        self._retry_at = 0.0  # while down, skip the store until this trio time

    async def _guard(
        self, call: Callable[[], Awaitable[T]], fallback: D, key: str = "", route: str = ""
    ) -> T | D:
        if not self.available and trio.current_time() < self._retry_at:
            return fallback
        try:
            result = await call()
        except StoreUnavailable as exc:
            self._down(exc, key, route)
            return fallback
        except StoreError as exc:
            logger.error("store %r refused a call: %s", self.store, exc, extra=fields(key, route))
            return fallback
        if not self.available:
            self.available = True
            logger.warning(
                "store %r available again: caching resumes", self.store, extra=fields(key, route)
            )
            self._on_change(StoreUp(key, route=route))
        return result

    def _down(self, exc: StoreUnavailable, key: str, route: str) -> None:
        self._retry_at = trio.current_time() + STORE_RETRY_INTERVAL
        if self.available:
            self.available = False
            logger.warning(
                "store %r unavailable (%s): serving without it, computing in this process",
                self.store,
                exc,
                extra=fields(key, route),
            )
            self._on_change(StoreDown(key, str(exc), route=route))

    async def get(self, key: str, route: str = "") -> Entry | None:
        """The entry under ``key``; None on a miss or while the store cannot answer."""
        return await self._guard(lambda: self.store.get(key), None, key, route)

    async def epoch(self, key: str) -> int | None:
        """``key``'s invalidation epoch; None when it cannot be read (then nothing is stored)."""
        if not self.available:
            return None
        return await self._guard(lambda: self.store.epoch(key), None)

    async def set(self, key: str, data: bytes, ttl: float, epoch: int) -> bool:
        """Store ``data`` unless an invalidation happened since ``epoch``; False if not stored."""
        return await self._guard(
            lambda: self.store.set(key, data, ttl, epoch=epoch), False, key
        )

    async def acquire(self, key: str, token: str, ttl: float) -> Lease | None:
        """The lease on ``key``; None when the store cannot coordinate (compute without one)."""
        if not self.available:
            return None
        return await self._guard(lambda: self.store.acquire_lease(key, token, ttl), None, key)

    async def announce(self, notice: Notice, token: str | None) -> None:
        """Release our lease (if any) and publish ``notice``; nothing if the store is down."""
        if not self.available:
            return  # nobody can hear us; a lease we hold expires by itself

        await self._guard(lambda: self.store.announce(notice, token), None, notice.key)

    async def renew(self, leases: Mapping[str, str], ttl: float) -> frozenset[str]:
        """Renew many leases at once; the keys whose lease was lost (none if the store is down)."""
        if not leases or not self.available:
            return frozenset()
        return await self._guard(lambda: self.store.renew_leases(leases, ttl), frozenset())
