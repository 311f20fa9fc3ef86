"""The store interface: values with a ttl, leases, and completion notices that wake waiters.

A store is what a Cacher keeps values in and coordinates through.  A store shared by several
processes (Redis) makes "one computation per key" hold across all of them: a process computes
only while it holds the key's lease, and announces the end with a `Notice` that wakes every
process watching that key.  `MemoryStore` implements the same contract inside one process;
`workerless.testing.StoreContract` checks any store against it.
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import trio

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_LEASE",
    "Entry",
    "Lease",
    "Notice",
    "Store",
    "Watch",
    "is_lease_token",
]

logger = logging.getLogger("workerless")

MAX_LEASE = 3600.0
"""No lease this library takes lasts longer (s); a longer one found in a store is foreign."""

DEFAULT_MAX_VALUE_BYTES = 4 * 1024 * 1024

_TOKEN = re.compile(r"[0-9a-f]{32}")


def is_lease_token(value: str) -> bool:
    """Whether ``value`` has the form of the lease tokens this library makes (token_hex(16))."""
    return _TOKEN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value and its remaining lifetime in seconds (None when the store cannot tell)."""

    value: bytes
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """What acquire_lease found: taken by us, or held by ``holder`` for ``expires_in`` more s."""

    acquired: bool
    holder: str  # the token holding the lease now (ours when acquired)
    expires_in: float  # seconds until that lease ends


@dataclass(frozen=True, slots=True)
class Notice:
    """Announces that the computation of ``key`` ended.

    ``stored``: the value is in the store now (``cached=False`` for a result that was not
    cacheable, so watchers compute for themselves); ``failed`` or ``timed_out``: watchers
    report the failure; ``abandoned``: the holder was cancelled, watchers take over at once.
    ``token`` is the lease token of the computation reported on ("" when it ran without a
    lease): a store delivers notices whatever their token; a watcher trusts only the holder's.
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
        """Keep ``notice`` if it is the first one, and wake the waiter."""
        if self._notice is None:
            self._notice = notice
            self._event.set()

    @property
    def delivered(self) -> Notice | None:
        """The notice delivered so far, without waiting; None if none came yet."""
        return self._notice

    async def wait(self) -> Notice:
        """Block until a notice about the key arrives, and return it."""
        await self._event.wait()
        assert self._notice is not None
        return self._notice


class Store(abc.ABC):
    """Where values live, and how processes sharing them agree on who computes.

    The rules every store keeps (`workerless.testing.StoreContract` checks them):

    - **Errors.** A method raises `StoreUnavailable` only when the backend cannot be reached
      (the caller then serves without the store) and `StoreError` when it answered but refused
      (a permission, an unsupported deployment).  Nothing else escapes, whatever the data.
    - **Keys** are short (at most a few hundred characters) printable ASCII strings without
      whitespace; any such string is a key, glob characters included, taken literally.
    - **Values** are bytes.  A value longer than ``max_value_bytes`` is never stored (`set`
      returns False) and never returned.  Data of the wrong type or size found under a key,
      written by someone else, is a miss for that key and is overwritten by the next `set`.
    - **Epoch.** `epoch(key)` is a counter that `delete(key)` and every `delete_prefix`
      covering ``key`` increase, in every process sharing the store; `set(key, ...,
      epoch=e)` stores only while ``epoch(key)`` still reads ``e``.  A store may keep one
      counter for several keys (one for all, or one per bucket of keys, as a sharded store
      must): other invalidations may then increase it too.  A corrupt epoch is repaired (to
      a larger value), never an error.
    - **Leases.** `acquire_lease` takes a free lease, renews the lease of the same token
      (re-entrant), and breaks a *foreign* lease (not a token of this library's form, no
      expiry, or more than `MAX_LEASE` s left), logging a warning.  Only the holder's token
      renews or releases a lease.
    - **Notices.** `publish` wakes this process's watchers of the key at once and reaches
      every other process's; a store ignores its own notices coming back (a watch registered
      after a publish does not get it).  `release_lease` wakes this process's watchers of the
      key with an ``abandoned`` notice.  A shared store wakes every local watch with an
      ``abandoned`` notice when it loses its notice connection and again once it is back,
      since notices may have been missed.
    - **Invalidation is acknowledged.** `delete` and `delete_prefix` return once no process
      sharing the store can serve the old value any more (or after a bounded wait, logged).
    - **Lifecycle.** `open`, `run` and `aclose` may be shared by several cachers: the store
      counts them and closes when the last one closes.  Every method is called from the trio
      thread; the waiter registry lives here, so a backend calls `_deliver` for each notice.
    """

    def __init__(self, *, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        if max_value_bytes < 1:
            raise ValueError("max_value_bytes must be positive")
        self.max_value_bytes = max_value_bytes
        self._watches: dict[str, set[Watch]] = {}

    async def open(self) -> None:
        """Connect; raise StoreUnavailable naming the backend when it cannot be reached,
        StoreError when it refuses what the store needs.  May be called by several owners."""

    async def aclose(self) -> None:
        """Release connections and stop background listeners, once every opener closed."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work the store needs while open (a notice listener); runs until cancelled.

        Several owners may run it at once; the work stops when the last of them stops.
        """
        task_status.started()

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or None (missing, expired, oversized, wrong type)."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing what was there.

        With ``epoch`` (read from ``epoch(key)`` before computing the value), store only if
        ``key`` was not invalidated since: a value computed from data older than an
        invalidation must not outlive it.  ``ttl <= 0`` deletes the key.  A value over
        ``max_value_bytes`` is not stored.  Return whether the value was stored.
        """

    @abc.abstractmethod
    async def epoch(self, key: str) -> int:
        """``key``'s invalidation counter: `delete(key)` and every `delete_prefix` covering
        ``key`` increase it, in every process (other invalidations may too)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key`` everywhere and increase its epoch; return whether it was there.

        Returns once no process sharing the store serves the old value any more.
        """

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` and increase their epochs; return how many.

        Returns once no process sharing the store serves the old values any more.
        """

    @abc.abstractmethod
    async def acquire_lease(self, key: str, token: str, ttl: float) -> Lease:
        """Take the lease on ``key`` for ``ttl`` seconds unless another token holds it.

        ``token`` is a fresh ``secrets.token_hex(16)`` per computation and ``0 < ttl <=
        MAX_LEASE`` (else ValueError).  The same token gets its lease renewed; a foreign lease
        is broken and taken.  The answer names the holder and how long its lease lasts.
        """

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
        """Give the lease up if ``token`` still holds it (never someone else's), and then wake
        this process's watchers of ``key`` with an ``abandoned`` notice."""

    async def announce(self, notice: Notice, token: str | None) -> None:
        """Release the lease ``token`` holds on ``notice.key`` (if any), then `publish` it.

        The end of a computation in one call: a shared store may do both in one round trip.
        """
        if token is not None:
            await self.release_lease(notice.key, token)
        await self.publish(notice)

    @abc.abstractmethod
    async def publish(self, notice: Notice) -> None:
        """Announce ``notice`` to every process watching its key (this one included, at once);
        never deliver it to a watch of this process registered after the call."""

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

    def _wake_all(self, reason: str) -> None:
        """Wake every local watch with a synthetic ``abandoned`` notice so it re-checks now."""
        for key in tuple(self._watches):
            self._deliver(Notice(key, "abandoned", reason))

    def _check_lease_request(self, token: str, ttl: float) -> None:
        """Refuse a token this library would not make, or a ttl it would never ask for."""
        if not is_lease_token(token):
            raise ValueError(f"lease token {token!r} is not secrets.token_hex(16)")
        if not 0 < ttl <= MAX_LEASE:
            raise ValueError(f"lease ttl {ttl!r} is not in (0, {MAX_LEASE:g}] s")
