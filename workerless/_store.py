"""The store interface: values with a ttl, leases, and completion notices that wake waiters.

A store is what a Cacher keeps values in and coordinates through.  A store shared by several
processes (Redis) makes "one computation per key" hold across all of them: a process computes
only while it holds the key's lease, and announces the end with a `Notice` that wakes every
process watching that key.  `MemoryStore` implements the same contract inside one process.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import trio

__all__ = ["MAX_LEASE", "Entry", "Lease", "Notice", "Store", "Watch"]

MAX_LEASE = 3600.0


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value and its remaining lifetime in seconds (None when the store cannot tell)."""

    value: bytes
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """What acquire_lease found: taken by us, or held by ``holder`` for ``expires_in`` more s."""

    acquired: bool
    holder: str
    expires_in: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Announces that the computation of ``key`` ended.

    ``stored``: the value is in the store now (``cached=False`` for a result that was not
    cacheable, so watchers compute for themselves); ``failed`` or ``timed_out``: watchers
    report the failure; ``abandoned``: the holder was cancelled, watchers take over at once.
    """

    key: str
    outcome: Literal["stored", "failed", "timed_out", "abandoned"]
    reason: str = ""
    cached: bool = True
    token: str = ""


class Watch:
    """A registration for the next Notice about one key, made before the caller checks the store.

    Registering first and checking second is what makes a notice impossible to miss.
    """

    __slots__ = ("_event", "_notice", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._event = trio.Event()
        self._notice: Notice | None = None

    def deliver(self, notice: Notice) -> None:
        if self._notice is None:
            self._notice = notice
            self._event.set()

    async def wait(self) -> Notice:
        """Block until a notice about the key arrives, and return it."""
        await self._event.wait()
        assert self._notice is not None
        return self._notice


class Store(abc.ABC):
    """Where values live, and how processes sharing them agree on who computes.

    Every method may raise `StoreUnavailable` when the backend cannot be reached; callers
    (the Cacher) then serve without the store.  Keys are short ASCII strings without
    whitespace; values are bytes.  The waiter registry lives here, so a backend only has to
    call `_deliver` for each notice it receives.
    """

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}

    async def open(self) -> None:
        """Connect; raise StoreUnavailable naming the backend when it cannot be reached."""

    async def aclose(self) -> None:
        """Release connections and stop background listeners."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work the store needs while open (a notice listener); runs until cancelled."""
        task_status.started()

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None:
        """Return the live entry under ``key``, or None."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing what was there.

        With ``epoch`` (read from `epoch` before computing the value), store only if nothing
        was deleted since: a value computed from data older than an invalidation must not
        outlive it.  Return whether the value was stored.
        """

    @abc.abstractmethod
    async def epoch(self) -> int:
        """A counter that every `delete` and `delete_prefix` increases, in every process."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key`` and increase the epoch; return whether the key was there."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` and increase the epoch; return how many."""

    @abc.abstractmethod
    async def acquire_lease(self, key: str, token: str, ttl: float) -> Lease:
        """Take the lease on ``key`` for ``ttl`` seconds if nobody (or ``token``) holds it."""

    @abc.abstractmethod
    async def renew_lease(self, key: str, token: str, ttl: float) -> bool:
        """Extend the lease if ``token`` still holds it; False if it was lost."""

    async def renew_leases(self, leases: Mapping[str, str], ttl: float) -> frozenset[str]:
        """Renew many leases (key to token) at once; return the keys whose lease was lost.

        A Cacher renews every lease it holds in one call, so a thousand running computations
        cost one round trip per renewal period, not a thousand.
        """
        lost = [key for key, token in leases.items() if not await self.renew_lease(key, token, ttl)]
        return frozenset(lost)

    @abc.abstractmethod
    async def release_lease(self, key: str, token: str) -> None:
        """Give the lease up if ``token`` still holds it (never someone else's)."""

    @abc.abstractmethod
    async def publish(self, notice: Notice) -> None:
        """Announce ``notice`` to every process watching its key (this one included)."""

    @contextmanager
    def watch(self, key: str) -> Iterator[Watch]:
        """Register for the next notice about ``key`` for the duration of the block."""
        w = Watch(key)
        self._watches.setdefault(key, set()).add(w)
        try:
            yield w
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(w)
                if not watches:
                    del self._watches[key]

    def _deliver(self, notice: Notice) -> None:
        """Wake every local watcher of ``notice.key``; call from the trio thread."""
        for w in tuple(self._watches.get(notice.key, ())):
            w.deliver(notice)
