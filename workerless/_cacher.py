"""Cacher: a cache in front of slow async calls, with one computation per key at a time."""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

import trio

from ._claim import Claimed, Failure, Found, LeaseKeeper, claim
from ._codecs import Codec, JSONCodec
from ._errors import ComputationFailed, Overloaded, StillComputing
from ._events import (
    Event,
    EventName,
    Failed,
    Hit,
    Listeners,
    Miss,
    Pending,
    Refreshed,
    Rejected,
    Stale,
    Stored,
    StoreDown,
    StoreUp,
)
from ._flight import Fetched, Flight, Rules, Success
from ._freshness import Envelope, Standing, should_refresh_early, standing
from ._guard import GuardedStore
from ._log import fields, logger
from ._memory import MemoryStore
from ._stats import CacherStatistics, Tally
from ._store import MAX_LEASE, Entry, Notice, Store, Watch

__all__ = ["Cacher", "Fetched"]

T = TypeVar("T")
E = TypeVar("E", bound=Event)
_MISSING: Any = object()  # no usable stored value (a stored value may be None itself)
_MEMO_ENTRIES = 256  # decoded hot entries remembered (immutable values only), each at most:
_MEMO_MAX_VALUE = 64 * 1024


class Cacher(Generic[T]):
    """A cache of slow async computations with single flight, hit/miss events and a deadline.

    On a miss the first caller starts the computation in the cacher's own nursery, so it
    outlives that caller; every caller asking for the same key while it runs waits on that one
    computation (with a shared store, in any process).  A successful value is stored for its
    ttl and handed to every waiter.  If the computation raises or passes ``hard_limit``,
    every waiter gets `ComputationFailed`, nothing is stored, and the next call computes again.
    A waiter whose ``deadline`` passes gets `StillComputing` while the computation goes on.
    A miss while ``max_computations`` computations run in this process gets `Overloaded`.

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
        max_computations: int = 1000,
        stale: float = 0.0,
        stale_if_error: float = 0.0,
        early_refresh: float = 1.0,
        codec: Codec[T] | None = None,
    ) -> None:
        if ttl <= 0 or hard_limit <= 0 or lease <= 0 or max_computations < 1:
            raise ValueError("ttl, hard_limit, lease and max_computations must be positive")
        if grace < 0 or stale < 0 or stale_if_error < 0 or early_refresh < 0:
            raise ValueError("grace, stale, stale_if_error and early_refresh must not be negative")
        if lease > MAX_LEASE:  # stores break longer leases as foreign
            raise ValueError(f"lease must be at most {MAX_LEASE:g} s")
        self._guard = GuardedStore(
            store if store is not None else MemoryStore(), self._store_changed
        )
        self.ttl = ttl
        self.hard_limit = hard_limit
        self.lease = lease
        self.grace = grace
        self.max_computations = max_computations
        self.stale = stale
        self.stale_if_error = stale_if_error
        self.early_refresh = early_refresh
        self.codec: Codec[T] = codec if codec is not None else JSONCodec()
        self._listeners = Listeners()
        self._decoded: dict[bytes, tuple[T, Envelope]] = {}  # see _read
        self._flights: dict[str, Flight] = {}  # misses' flights, by key: later misses join them
        self._refreshing: dict[str, Flight] = {}  # background refreshes: readers never wait
        self._running: set[Flight] = set()  # every running flight
        self._waiting: set[Watch] = set()  # watches blocked on another process's computation
        self._keeper = LeaseKeeper(self._guard)
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._idle = trio.Event()
        self._idle.set()
        self._draining = False
        self._tallies: dict[str, Tally] = {}  # per route rule: see statistics()

    @property
    def store(self) -> Store:
        """The store values live in; may be replaced only while the cacher is not running."""
        return self._guard.store

    @store.setter
    def store(self, store: Store) -> None:
        if self._nursery is not None:
            raise RuntimeError("cannot replace the store of a running Cacher")
        self._guard.store = store

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Cacher[T]:
        if self._nursery is not None:
            raise RuntimeError("this Cacher is already running")
        stack = AsyncExitStack()
        await stack.enter_async_context(self._serving())
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
    async def _serving(self) -> AsyncIterator[None]:
        store = self.store
        await store.open()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._draining = False
                await nursery.start(store.run)
                nursery.start_soon(self._keeper.run, lambda: self.lease / 3, lambda: self.lease)
                try:
                    yield
                finally:
                    self.drain()
                    with trio.move_on_after(self.grace):
                        await self.wait_idle()
                    if self._running:
                        logger.warning(
                            "cancelling %d computation(s) still running at shutdown",
                            len(self._running),
                            extra=fields(),
                        )
                    nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await store.aclose()

    def drain(self) -> None:
        """Stop holding callers: every waiter, now and later, gets `StillComputing` at once.

        Running computations continue (for the grace period when the cacher closes) and still
        fill the store; hits are still served.
        """
        self._draining = True
        for flight in self._running:
            flight.wake.set()

    @property
    def draining(self) -> bool:
        return self._draining

    async def wait_idle(self) -> None:
        """Return once no computation is running in this process."""
        await self._idle.wait()

    # -- events ----------------------------------------------------------------------------

    @overload
    def on(
        self, event: type[E], callback: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]: ...

    @overload
    def on(
        self, event: EventName, callback: Callable[[Any], Awaitable[None] | None]
    ) -> Callable[[], None]: ...

    def on(
        self, event: Any, callback: Callable[[Any], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of a type: ``on(Hit, callback)``.

        A base class subscribes to its subclasses (``on(Event, ...)``: everything).  The
        names ``"hit"``, ``"miss"``, ``"stored"``, ``"failed"``, ``"rejected"`` work too.  Sync
        callbacks run inline and must be quick; async ones run in the cacher's nursery.  An
        exception in a callback is logged and never reaches the caller.  Returns a function
        that removes the callback.
        """
        return self._listeners.subscribe(event, callback)

    def _emit(self, event: Event) -> None:
        nursery = self._nursery
        self._listeners.emit(event, None if nursery is None else nursery.start_soon)

    def statistics(self) -> CacherStatistics:
        """This process's figures since the cacher was created, in all and per route rule."""
        return CacherStatistics.of(self._tallies, self._guard.available)

    def _tally(self, route: str) -> Tally:
        tally = self._tallies[route] = Tally()
        return tally

    # -- fetching --------------------------------------------------------------------------

    async def fetch(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        deadline: float | None = None,
        route: str = "",
    ) -> T:
        """Return the value under ``key``, computing it with ``compute()`` on a miss.

        See `fetch_result` for who computes, who waits and what each waiter gets.
        """
        return (
            await self.fetch_result(key, compute, ttl=ttl, deadline=deadline, route=route)
        ).value

    async def fetch_result(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        deadline: float | None = None,
        cacheable: Callable[[T], bool] | None = None,
        shareable: Callable[[T], bool] | None = None,
        hard_limit: float | None = None,
        stale: float | None = None,
        stale_if_error: float | None = None,
        route: str = "",
    ) -> Fetched[T]:
        """Return the value under ``key`` and how it was obtained.

        On a miss, the first caller starts ``compute()`` in the background; later callers for
        the same key join it.  Each caller waits up to ``deadline`` seconds (None: until the
        computation ends) and then gets `StillComputing`; the computation continues.  If it
        raises or passes the hard limit, every waiter gets `ComputationFailed`.  A value for
        which ``cacheable(value)`` is false is not stored; one for which ``shareable(value)``
        is false is neither stored nor handed to the callers who joined: each of them computes
        for itself (a private answer is never shared).  A miss while ``max_computations`` run
        here raises `Overloaded`.

        For ``stale`` seconds after its ttl a value is still returned at once (source
        ``"stale"``) while one refresh runs in the background (one per fleet through the
        lease); for ``stale_if_error`` seconds after that, a caller waits for the computation
        as on a miss, but gets the old value instead of `ComputationFailed` if it fails.  With
        ``early_refresh`` above 0 (XFetch's beta; 1 by default), a hit may start that refresh
        before the ttl ends, the sooner the longer the last computation took.
        Unset arguments default to the cacher's own.  ``route`` (a route rule, or any label)
        is carried by the events of this call and its computation, and counted apart in
        `statistics`: keep the number of distinct values small.
        """
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("the Cacher is not running: use `async with cacher:` first")
        # The computation's rules, built only when one starts (never on a plain hit).
        limits = (ttl, hard_limit, cacheable, shareable, stale, stale_if_error)
        fallback: tuple[T, float] | None = None  # an old value, if the computation fails
        tally = self._tallies.get(route) or self._tally(route)
        # A computation of this key already running here answers sooner than the store can, and
        # joining it first keeps a stampede from queueing one store read per request.
        flight = self._flights.get(key)
        if flight is None:
            entry = await self._guard.get(key, route)
            found = self._read(key, entry, route)
            if found is not None:
                value, envelope = found
                position, fresh_left = standing(envelope, entry.ttl if entry else None)
                if position is Standing.FRESH:
                    tally.hits += 1
                    if self.early_refresh and should_refresh_early(
                        envelope.duration, fresh_left, self.early_refresh
                    ):
                        self._refresh(
                            key, compute, self._rules(*limits), envelope.generation, route
                        )
                    left = None if fresh_left == math.inf else fresh_left
                    if self._listeners.wanted(Hit):
                        self._emit(Hit(key, left, route=route))
                    return Fetched(value, "hit", stored=True, ttl=left)
                if position is Standing.STALE:
                    tally.stale += 1
                    self._refresh(key, compute, self._rules(*limits), envelope.generation, route)
                    self._emit(Stale(key, -fresh_left, route=route))
                    return Fetched(value, "stale", stored=True, ttl=fresh_left)
                if position is Standing.STALE_IF_ERROR:
                    fallback = (value, fresh_left)
            flight = self._flights.get(key)  # one may have started while we read the store
        collapsed = flight is not None
        rules = self._rules(*limits)
        if flight is None:
            flight = self._flights[key] = self._start(key, compute, rules, route=route)
        else:
            tally.collapsed += 1
        tally.misses += 1
        self._emit(Miss(key, collapsed, route=route))
        outcome = await self._wait(flight, deadline, collapsed, tally, route)
        if isinstance(outcome, Success) and collapsed and not outcome.shared:
            # Hit-for-miss: the answer was private to its caller; compute our own, unshared.
            outcome = await self._wait(
                self._start(key, compute, rules, coordinated=False, route=route),
                deadline,
                collapsed,
                tally,
                route,
            )
        if isinstance(outcome, Failure):
            if fallback is not None:
                tally.stale += 1
                self._emit(Stale(key, -fallback[1], outcome.reason, route=route))
                value, fresh_left = fallback
                return Fetched(value, "stale", stored=True, ttl=fresh_left, failure=outcome.reason)
            raise ComputationFailed(key, outcome.reason, timed_out=outcome.timed_out)
        source: Literal["computed", "collapsed"] = (
            "computed" if outcome.computed_here and not collapsed else "collapsed"
        )
        return Fetched(
            outcome.value, source, stored=outcome.stored, store_available=flight.store_available
        )

    def _rules(
        self,
        ttl: float | None,
        hard_limit: float | None,
        cacheable: Callable[[T], bool] | None,
        shareable: Callable[[T], bool] | None,
        stale: float | None,
        stale_if_error: float | None,
    ) -> Rules[T]:
        """A computation's rules: the caller's, else the cacher's own."""
        return Rules(
            self.ttl if ttl is None else ttl,
            self.hard_limit if hard_limit is None else hard_limit,
            cacheable,
            shareable,
            self.stale if stale is None else stale,
            self.stale_if_error if stale_if_error is None else stale_if_error,
        )

    def _refresh(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        rules: Rules[T],
        replacing: bytes,
        route: str,
    ) -> None:
        """Recompute ``key`` in the background unless that already runs here or the cap is hit."""
        if key in self._refreshing or len(self._running) >= self.max_computations:
            return
        rules = replace(rules, replacing=replacing)
        self._refreshing[key] = self._start(key, compute, rules, route=route)

    async def invalidate(self, key: str) -> bool:
        """Remove ``key`` from the store; True if it was there."""
        return await self.store.delete(key)

    async def invalidate_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; return how many were removed."""
        return await self.store.delete_prefix(prefix)

    def _start(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        rules: Rules[T],
        *,
        coordinated: bool = True,
        route: str = "",
    ) -> Flight:
        tally = self._tallies.get(route) or self._tally(route)
        if len(self._running) >= self.max_computations:
            tally.rejected += 1
            self._emit(Rejected(key, self.max_computations, route=route))
            raise Overloaded(key, self.max_computations)
        assert self._nursery is not None
        flight = Flight(key, coordinated=coordinated, route=route)
        self._running.add(flight)
        tally.running += 1
        if self._idle.is_set():  # keep an unset one: wait_idle() callers hold it
            self._idle = trio.Event()
        self._nursery.start_soon(self._fly, flight, compute, rules)
        return flight

    async def _wait(
        self, flight: Flight, deadline: float | None, collapsed: bool, tally: Tally, route: str
    ) -> Success[T] | Failure:
        if not flight.done and not self._draining:
            started = trio.current_time()
            tally.held += 1
            try:
                with trio.move_on_after(float("inf") if deadline is None else deadline):
                    await flight.wake.wait()
            finally:
                tally.held -= 1
                tally.wait_time.add(trio.current_time() - started)
        if not flight.done:
            tally.pending += 1
            draining = self._draining
            self._emit(Pending(flight.key, collapsed, draining, route=route))
            raise StillComputing(flight.key, collapsed=collapsed, shutting_down=draining)
        assert flight.outcome is not None
        return flight.outcome

    def _read(self, key: str, entry: Entry | None, route: str = "") -> tuple[T, Envelope] | None:
        """The value of a stored entry and its envelope; None if there is none or it is garbage."""
        if entry is None:
            return None
        raw = entry.value
        memo = self._decoded if getattr(self.codec, "immutable_values", False) else None
        if memo is not None:
            known = memo.get(raw)  # a bytes object keeps its hash: a hot entry costs one lookup
            if known is not None:
                return known
        try:
            envelope = Envelope.unpack(raw)
            found = self.codec.decode(envelope.payload), envelope
        except Exception as exc:
            # Another app's, an older version's or planted bytes: compute again, overwrite them.
            logger.warning(
                "ignoring the stored value of %r (%s); computing it again",
                key,
                exc,
                extra=fields(key, route),
            )
            return None
        if memo is not None and len(raw) <= _MEMO_MAX_VALUE:
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[raw] = found
        return found

    def _fresh(self, rules: Rules[T], route: str) -> Callable[[str, Entry | None], Any]:
        """What counts as found for a computation: a fresh value it does not replace."""

        def decode(key: str, entry: Entry | None) -> Any:
            found = self._read(key, entry, route)
            if found is None:
                return _MISSING
            value, envelope = found
            position, _ = standing(envelope, entry.ttl if entry else None)
            if position is not Standing.FRESH or envelope.generation == rules.replacing:
                return _MISSING
            return value

        return decode

    def _store_changed(self, event: StoreDown | StoreUp) -> None:
        """Tell listeners; if the store went down, waiters on other processes' computations
        compute here now."""
        if isinstance(event, StoreDown):
            for watch in tuple(self._waiting):
                watch.deliver(Notice(watch.key, "abandoned", "store unavailable"))
        self._emit(event)

    # -- the computation -------------------------------------------------------------------

    async def _fly(
        self, flight: Flight, compute: Callable[[], Awaitable[T]], rules: Rules[T]
    ) -> None:
        try:
            if flight.coordinated:
                token = secrets.token_hex(16)
                found = await claim(
                    self._guard,
                    flight.key,
                    token,
                    self.lease,
                    self._fresh(rules, flight.route),
                    _MISSING,
                    self._waiting,
                )
            else:
                found = Claimed(None)
            if isinstance(found, Found):
                flight.outcome = Success(found.value, stored=True, shared=True, computed_here=False)
            elif isinstance(found, Failure):
                flight.outcome = found
            else:
                flight.outcome = await self._compute(flight, compute, rules, found.token)
        except trio.Cancelled:
            if flight.outcome is None:
                flight.outcome = Failure("cancelled while shutting down")
            raise
        except Exception as exc:  # a bug of ours or of a store: still answer every waiter
            logger.exception(
                "computing %r failed unexpectedly",
                flight.key,
                extra=fields(flight.key, flight.route),
            )
            if flight.outcome is None:
                flight.outcome = Failure(type(exc).__name__)
        finally:
            self._resolve(flight)

    def _resolve(self, flight: Flight) -> None:
        if flight.done:
            return
        flight.done = True
        flight.store_available = self._guard.available
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if self._refreshing.get(flight.key) is flight:
            del self._refreshing[flight.key]
        self._running.discard(flight)
        self._tallies[flight.route].running -= 1
        if not self._running:
            self._idle.set()
        flight.wake.set()

    async def _compute(
        self,
        flight: Flight,
        compute: Callable[[], Awaitable[T]],
        rules: Rules[T],
        token: str | None,
    ) -> Success[T] | Failure:
        key, route = flight.key, flight.route
        tally = self._tallies[route]
        tally.computations += 1
        if token is not None:
            self._keeper.held[key] = token
        started = trio.current_time()
        outcome: Success[T] | Failure
        try:
            epoch = await self._guard.epoch(key)
            try:
                with trio.move_on_after(rules.hard_limit) as limit:
                    value = await compute()
            finally:
                self._keeper.held.pop(key, None)
            if limit.cancelled_caught:
                reason = f"ran past the hard limit of {rules.hard_limit:g} s"
                logger.error("computing %r %s; cancelled", key, reason, extra=fields(key, route))
                outcome = Failure(reason, timed_out=True)
                notice = Notice(key, "timed_out", reason, token=token or "")
            else:
                shared = rules.shareable is None or rules.shareable(value)
                cached = shared and (rules.cacheable is None or rules.cacheable(value))
                duration = trio.current_time() - started
                stored = (
                    cached
                    and epoch is not None
                    and await self._put(key, value, rules, duration, epoch, route)
                )
                outcome = Success(value, stored=stored, shared=shared, computed_here=True)
                notice = Notice(key, "stored", cached=stored, token=token or "")
                if stored:
                    self._emit(Stored(key, rules.ttl, duration, route=route))
                    if rules.replacing is not None:
                        self._emit(Refreshed(key, duration, route=route))
        except trio.Cancelled:
            # Shutting down: free the key at once so another process can take it over.
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self._guard.announce(
                    Notice(key, "abandoned", "cancelled", token=token or ""), token
                )
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200]
            logger.error(
                "computing %r failed: %s", key, reason, exc_info=exc, extra=fields(key, route)
            )
            outcome = Failure(reason)
            notice = Notice(key, "failed", reason, token=token or "")
        tally.computation_time.add(trio.current_time() - started)
        if isinstance(outcome, Failure):
            tally.failures += 1
            tally.timeouts += outcome.timed_out
            self._emit(Failed(key, outcome.reason, outcome.timed_out, route=route))
        if flight.coordinated:
            if isinstance(outcome, Success) and outcome.stored:
                # Stored: a new local request finds the value, so local waiters need not wait
                # for the two round trips of the announcement.
                flight.outcome = outcome
                self._resolve(flight)
            # Otherwise give the lease back and tell other processes before answering local
            # waiters: a new local request in between would find the lease still held.
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._guard.announce(notice, token)
        return outcome

    async def _put(
        self, key: str, value: T, rules: Rules[T], duration: float, epoch: int, route: str
    ) -> bool:
        try:
            payload = self.codec.encode(value)
        except Exception:
            logger.exception(
                "cannot encode the value of %r; not stored", key, extra=fields(key, route)
            )
            return False
        envelope = Envelope.new(payload, rules.stale, rules.stale_if_error, duration)
        stored = await self._guard.set(key, envelope.pack(), rules.ttl + envelope.windows, epoch)
        if not stored:
            logger.info(
                "%r not stored: invalidated while computing, or refused by the store",
                key,
                extra=fields(key, route),
            )
        return stored
