"""Who computes a key across processes: claim its lease, or wait for the holder's notice.

The protocol, for one key, run by the process that missed:
1. register for the key's next notice, then re-check the store (a value stored between the
   miss and the registration is seen, and no notice can be missed);
2. try to take the lease: taken means "compute it here";
3. else wait for the holder's notice, or for its lease to end (a dead holder), then go to 1.
A failure notice counts only from the holder seen in step 2 (a forged or stale one is
ignored).  While the store is down there is no protocol: the caller computes without a lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ._guard import GuardedStore
from ._log import fields
from ._store import Notice, Watch

__all__ = ["TAKEOVER_MARGIN", "Claimed", "Failure", "Found", "LeaseKeeper", "claim"]

logger = logging.getLogger("workerless")

TAKEOVER_MARGIN = 0.05  # seconds past a holder's lease before a waiter looks again


@dataclass(frozen=True, slots=True)
class Claimed:
    """Compute here; ``token`` is the lease held, or None when computing without one."""

    token: str | None


@dataclass(frozen=True, slots=True)
class Found:
    """The value appeared in the store (another process computed it)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Failure:
    """A computation failed: it raised (``timed_out`` false) or passed its hard limit."""

    reason: str
    timed_out: bool = False


async def claim(
    guard: GuardedStore,
    key: str,
    token: str,
    lease: float,
    decode: Callable[[str, Any], Any],
    missing: object,
    waiting: set[Watch],
) -> Claimed | Found | Failure:
    """Run the protocol above for ``key`` until this process computes, finds, or fails.

    ``decode(key, entry)`` returns ``missing`` for no usable value; ``waiting`` holds the
    watches this call blocks on, so a store outage can wake them (see `Cacher`).
    """
    while guard.available:
        with guard.store.watch(key) as watch:
            value = decode(key, await guard.get(key))
            if value is not missing:
                return Found(value)
            held = await guard.acquire(key, token, lease)
            if held is None:
                break  # the store went away, or refused: compute without it
            if held.acquired:
                return Claimed(token)
            notice: Notice | None = None
            waiting.add(watch)
            try:
                with trio.move_on_after(held.expires_in + TAKEOVER_MARGIN):
                    notice = await watch.wait()
            finally:
                waiting.discard(watch)
            if (
                notice is not None
                and notice.outcome in ("failed", "timed_out")
                and notice.token == held.holder
            ):
                return Failure(notice.reason, notice.outcome == "timed_out")
    return Claimed(None)


class LeaseKeeper:
    """Keeps the leases of this process's running computations alive: one store call for all."""

    def __init__(self, guard: GuardedStore) -> None:
        self.guard = guard
        self.held: dict[str, str] = {}  # key -> token

    async def run(self, period: Callable[[], float], ttl: Callable[[], float]) -> None:
        """Renew every held lease each ``period()`` seconds, forever; drop the lost ones."""
        while True:
            await trio.sleep(period())
            if not self.held:
                continue
            held = dict(self.held)
            for key in await self.guard.renew(held, ttl()):
                if self.held.get(key) == held[key]:
                    del self.held[key]
                    logger.warning(
                        "lost the lease on %r while computing it", key, extra=fields(key)
                    )
