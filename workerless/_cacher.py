"""Cacher: a cache in front of slow async calls, with one computation per key at a time."""

from __future__ import annotations

import inspect
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar

import trio

from ._errors import ComputationFailed, StillComputing, StoreUnavailable
from ._events import CacherStatistics, Event, EventName, Failed, Hit, Miss, Stored
from ._memory import MemoryStore
from ._store import Entry, Notice, Store

__all__ = ["Cacher", "Codec", "Fetched", "JSONCodec", "Listener"]

logger = logging.getLogger("workerless")

T = TypeVar("T")
Listener = Callable[[Any], Awaitable[None] | None]
_EVENT_NAMES: tuple[EventName, ...] = ("hit", "miss", "stored", "failed")
_UNDECODED: Any = object()  # no usable stored value (a stored value may be None itself)
STORE_RETRY_INTERVAL = 1.0  # seconds between attempts to reach a store that went down


class Codec(Protocol[T]):
    """Turns values into the bytes a store keeps, and back."""

    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


class JSONCodec:
    """The default codec: any JSON-serialisable value (never pickle: a shared store is input)."""

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A value and how it was obtained.

    ``source`` is ``"hit"`` (read from the store), ``"computed"`` (this call started the
    computation that produced it) or ``"collapsed"`` (it joined a computation started by
    another caller, in this process or another).  ``stored`` tells whether the value is in
    the store; ``ttl`` is its remaining lifetime on a hit.
    """

    value: T
    source: Literal["hit", "computed", "collapsed"]
    stored: bool = False
    ttl: float | None = None
    store_available: bool = True


class _Flight:
    """One running computation of one key in this process, and what its waiters will get."""

    __slots__ = (
        "computed_here",
        "done",
        "failure",
        "key",
        "store_available",
        "stored",
        "value",
        "wake",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.wake = trio.Event()  # set when done, or when the cacher starts draining
        self.done = False
        self.value: Any = None
        self.failure: tuple[str, bool] | None = None  # (reason, timed_out)
        self.stored = False
        self.computed_here = False
        self.store_available = True


class Cacher(Generic[T]):
    """A cache of slow async computations with single flight, hit/miss events and a deadline.

    On a miss the first caller starts the computation in the cacher's own nursery, so it
    outlives that caller; every caller asking for the same key while it runs waits on that one
    computation (with a shared store, in any process).  A successful value is stored for its
    ttl and handed to every waiter.  If the computation raises or passes ``hard_limit``,
    every waiter gets `ComputationFailed`, nothing is stored, and the next call computes again.
    A waiter whose ``deadline`` passes gets `StillComputing` while the computation goes on.

    Use it as ``async with Cacher(store) as cacher:``; the store is opened and closed with it.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        ttl: float = 300.0,
        hard_limit: float = 120.0,
        lease: float = 15.0,
        grace: float = 3.0,
        codec: Codec[T] | None = None,
    ) -> None:
        if ttl <= 0 or hard_limit <= 0 or lease <= 0 or grace < 0:
            raise ValueError("ttl, hard_limit and lease must be positive, grace not negative")
        self.store: Store = store if store is not None else MemoryStore()
        self.ttl = ttl
        self.hard_limit = hard_limit
        self.lease = lease
        self.grace = grace
        self.codec: Codec[T] = codec if codec is not None else JSONCodec()
        self._listeners: dict[str, list[Listener]] = {name: [] for name in _EVENT_NAMES}
        self._flights: dict[str, _Flight] = {}
        self._leases: dict[str, str] = {}  # key -> token, for computations running here
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._idle = trio.Event()
        self._idle.set()
        self._draining = False
        self._store_available = True
        self._store_retry_at = 0.0  # while the store is down, skip it until this trio time
        self._hits = self._misses = self._collapsed = self._computations = self._failures = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Cacher[T]:
        if self._nursery is not None:
            raise RuntimeError("this Cacher is already running")
        stack = AsyncExitStack()
        await stack.enter_async_context(self._running())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        await self.store.open()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._draining = False
                await nursery.start(self.store.run)
                nursery.start_soon(self._renew_leases)
                try:
                    yield
                finally:
                    self.drain()
                    with trio.move_on_after(self.grace):
                        await self.wait_idle()
                    if self._flights:
                        logger.warning(
                            "cancelling %d computation(s) still running at shutdown",
                            len(self._flights),
                        )
                    nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.store.aclose()

    def drain(self) -> None:
        """Stop holding callers: every waiter, now and later, gets `StillComputing` at once.

        Running computations continue (for the grace period when the cacher closes) and still
        fill the store; hits are still served.
        """
        self._draining = True
        for flight in self._flights.values():
            flight.wake.set()

    @property
    def draining(self) -> bool:
        return self._draining

    async def wait_idle(self) -> None:
        """Return once no computation is running in this process."""
        await self._idle.wait()

    # -- events ----------------------------------------------------------------------------

    def on(self, event: EventName, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on every ``"hit"``, ``"miss"``, ``"stored"`` or ``"failed"``.

        Sync callbacks run inline and must be quick; async ones run in the cacher's nursery.
        An exception in a callback is logged and never reaches the caller.  Returns a function
        that removes the callback.
        """
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; expected one of {_EVENT_NAMES}")
        self._listeners[event].append(callback)
        return lambda: self._listeners[event].remove(callback)

    def _emit(self, name: EventName, event: Event) -> None:
        for callback in self._listeners[name]:
            try:
                result = callback(event)
            except Exception:
                logger.exception("%s listener %r raised", name, callback)
                continue
            if inspect.isawaitable(result) and self._nursery is not None:
                self._nursery.start_soon(self._await_listener, name, result)

    @staticmethod
    async def _await_listener(name: str, awaitable: Awaitable[None]) -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("async %s listener raised", name)

    def statistics(self) -> CacherStatistics:
        return CacherStatistics(
            hits=self._hits,
            misses=self._misses,
            collapsed=self._collapsed,
            computations=self._computations,
            failures=self._failures,
            running=len(self._flights),
            store_available=self._store_available,
        )

    # -- fetching --------------------------------------------------------------------------

    async def fetch(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        deadline: float | None = None,
    ) -> T:
        """Return the value under ``key``, computing it with ``compute()`` on a miss.

        See `fetch_result` for who computes, who waits and what each waiter gets.
        """
        return (await self.fetch_result(key, compute, ttl=ttl, deadline=deadline)).value

    async def fetch_result(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        deadline: float | None = None,
        cacheable: Callable[[T], bool] | None = None,
        hard_limit: float | None = None,
    ) -> Fetched[T]:
        """Return the value under ``key`` and how it was obtained.

        On a miss, the first caller starts ``compute()`` in the background; later callers for
        the same key join it.  Each caller waits up to ``deadline`` seconds (None: until the
        computation ends) and then gets `StillComputing`; the computation continues.  If it
        raises or passes the hard limit, every waiter gets `ComputationFailed`.  A value for
        which ``cacheable(value)`` is false is handed to the waiters but not stored.
        ``ttl`` and ``hard_limit`` default to the cacher's own.
        """
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("the Cacher is not running: use `async with cacher:` first")
        # A computation of this key already running here answers sooner than the store can, and
        # joining it first keeps a stampede from queueing one store read per request.
        flight = self._flights.get(key)
        if flight is None:
            entry = await self._get(key)
            decoded = self._decode(key, entry)
            if entry is not None and decoded is not _UNDECODED:
                self._hits += 1
                self._emit("hit", Hit(key, entry.ttl))
                return Fetched(decoded, "hit", stored=True, ttl=entry.ttl)
            flight = self._flights.get(key)  # one may have started while we read the store
        collapsed = flight is not None
        if flight is None:
            flight = self._flights[key] = _Flight(key)
            if self._idle.is_set():  # keep an unset one: wait_idle() callers hold it
                self._idle = trio.Event()
            limits = (
                self.ttl if ttl is None else ttl,
                self.hard_limit if hard_limit is None else hard_limit,
            )
            nursery.start_soon(self._fly, flight, compute, limits, cacheable)
        else:
            self._collapsed += 1
        self._misses += 1
        self._emit("miss", Miss(key, collapsed))

        if not flight.done and not self._draining:
            with trio.move_on_after(float("inf") if deadline is None else deadline):
                await flight.wake.wait()
        if not flight.done:
            raise StillComputing(key, collapsed=collapsed, shutting_down=self._draining)
        if flight.failure is not None:
            reason, timed_out = flight.failure
            raise ComputationFailed(key, reason, timed_out=timed_out)
        source: Literal["computed", "collapsed"] = (
            "computed" if flight.computed_here and not collapsed else "collapsed"
        )
        return Fetched(
            flight.value, source, stored=flight.stored, store_available=flight.store_available
        )

    async def invalidate(self, key: str) -> bool:
        """Remove ``key`` from the store; True if it was there."""
        return await self.store.delete(key)

    async def invalidate_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; return how many were removed."""
        return await self.store.delete_prefix(prefix)

    # -- the store, with degradation -------------------------------------------------------

    async def _get(self, key: str) -> Entry | None:
        if not self._store_available and trio.current_time() < self._store_retry_at:
            return None  # known down: don't make every request wait for a timeout
        try:
            entry = await self.store.get(key)
        except StoreUnavailable as exc:
            self._store_down(exc)
            return None
        self._store_up()
        return entry

    def _decode(self, key: str, entry: Entry | None) -> Any:
        """The value of a stored entry, or _UNDECODED if there is none or it is garbage."""
        if entry is None:
            return _UNDECODED
        try:
            return self.codec.decode(entry.value)
        except Exception:
            # Another app's or an older version's bytes: compute again and overwrite them.
            logger.warning("cannot decode the stored value of %r; computing it again", key)
            return _UNDECODED

    def _store_down(self, exc: StoreUnavailable) -> None:
        self._store_retry_at = trio.current_time() + STORE_RETRY_INTERVAL
        if self._store_available:
            self._store_available = False
            logger.warning(
                "store %r unavailable (%s): serving without it, computing in this process",
                self.store,
                exc,
            )

    def _store_up(self) -> None:
        if not self._store_available:
            self._store_available = True
            logger.warning("store %r available again: caching resumes", self.store)

    # -- the computation -------------------------------------------------------------------

    async def _fly(
        self,
        flight: _Flight,
        compute: Callable[[], Awaitable[T]],
        limits: tuple[float, float],
        cacheable: Callable[[T], bool] | None,
    ) -> None:
        try:
            await self._settle(flight, compute, limits, cacheable)
        except trio.Cancelled:
            if flight.failure is None and not flight.done:
                flight.failure = ("cancelled while shutting down", False)
            raise
        except Exception as exc:  # a bug of ours or of a store: still answer every waiter
            logger.exception("computing %r failed unexpectedly", flight.key)
            if not flight.done:
                flight.failure = (f"{type(exc).__name__}", False)
        finally:
            self._resolve(flight)

    def _resolve(self, flight: _Flight) -> None:
        if flight.done:
            return
        flight.done = True
        flight.store_available = self._store_available
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if not self._flights:
            self._idle.set()
        flight.wake.set()

    async def _settle(
        self,
        flight: _Flight,
        compute: Callable[[], Awaitable[T]],
        limits: tuple[float, float],
        cacheable: Callable[[T], bool] | None,
    ) -> None:
        key = flight.key
        token = secrets.token_hex(16)
        leased = False
        while self._store_available:
            with self.store.watch(key) as watch:
                # Re-check after registering: a completion between our miss and now is seen.
                decoded = self._decode(key, await self._get(key))
                if decoded is not _UNDECODED:
                    flight.value = decoded
                    flight.stored = True
                    return
                if not self._store_available:
                    break
                try:
                    leased = (await self.store.acquire_lease(key, token, self.lease)).acquired
                except StoreUnavailable as exc:
                    self._store_down(exc)
                    break
                if leased:
                    break
                # Another process computes: its notice wakes us; if it died, its lease expires.
                notice: Notice | None = None
                with trio.move_on_after(self.lease):
                    notice = await watch.wait()
                if notice is not None and notice.outcome in ("failed", "timed_out"):
                    flight.failure = (notice.reason, notice.outcome == "timed_out")
                    return
        await self._compute(flight, compute, limits, cacheable, token if leased else None)

    async def _compute(
        self,
        flight: _Flight,
        compute: Callable[[], Awaitable[T]],
        limits: tuple[float, float],
        cacheable: Callable[[T], bool] | None,
        token: str | None,
    ) -> None:
        key = flight.key
        ttl, hard_limit = limits
        self._computations += 1
        if token is not None:
            self._leases[key] = token
        started = trio.current_time()
        notice: Notice
        try:
            epoch = await self._epoch()
            try:
                with trio.move_on_after(hard_limit) as limit:
                    value = await compute()
            finally:
                self._leases.pop(key, None)
            if limit.cancelled_caught:
                reason = f"ran past the hard limit of {hard_limit:g} s"
                logger.error("computing %r %s; cancelled", key, reason)
                flight.failure = (reason, True)
                notice = Notice(key, "timed_out", reason)
            else:
                cached = cacheable is None or cacheable(value)
                flight.value = value
                flight.computed_here = True
                if cached and self._store_available:
                    flight.stored = await self._put(key, value, ttl, epoch)
                notice = Notice(key, "stored", cached=flight.stored)
                if flight.stored:
                    self._emit("stored", Stored(key, ttl, trio.current_time() - started))
        except trio.Cancelled:
            # Shutting down: free the key at once so another process can take it over.
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self._announce(Notice(key, "abandoned", "cancelled"), token)
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200]
            logger.error("computing %r failed: %s", key, reason, exc_info=exc)
            flight.failure = (reason, False)
            notice = Notice(key, "failed", reason)
        if flight.failure is not None:
            self._failures += 1
            reason, timed_out = flight.failure
            self._emit("failed", Failed(key, reason, timed_out))
        # Give the lease back and tell other processes before answering local waiters: a new
        # local request in between joins this flight instead of finding the lease still held.
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self._announce(notice, token)
        self._resolve(flight)

    async def _epoch(self) -> int | None:
        """The store's invalidation epoch before a computation; None if it cannot be read."""
        if not self._store_available:
            return None
        try:
            return await self.store.epoch()
        except StoreUnavailable as exc:
            self._store_down(exc)
            return None

    async def _put(self, key: str, value: T, ttl: float, epoch: int | None) -> bool:
        if epoch is None:
            return False  # the store was away when the computation began: don't guess
        try:
            data = self.codec.encode(value)
        except Exception:
            logger.exception("cannot encode the value of %r; not stored", key)
            return False
        try:
            stored = await self.store.set(key, data, ttl, epoch=epoch)
        except StoreUnavailable as exc:
            self._store_down(exc)
            return False
        if not stored:
            logger.info("%r not stored: invalidated while computing, or refused by the store", key)
        return stored

    async def _announce(self, notice: Notice, token: str | None) -> None:
        if not self._store_available:
            return  # nobody can hear us; a lease we hold expires by itself
        try:
            if token is not None:
                await self.store.release_lease(notice.key, token)
            await self.store.publish(notice)
        except StoreUnavailable as exc:
            self._store_down(exc)

    async def _renew_leases(self) -> None:
        """Keep the leases of running computations alive: one store call per period for all."""
        while True:
            await trio.sleep(self.lease / 3)
            if not self._leases or not self._store_available:
                continue
            held = dict(self._leases)
            try:
                lost = await self.store.renew_leases(held, self.lease)
            except StoreUnavailable as exc:
                self._store_down(exc)
                continue
            for key in lost:
                if self._leases.get(key) == held[key]:
                    del self._leases[key]
                    logger.warning("lost the lease on %r while computing it", key)
