"""The Cacher on its own: single flight, deadline, errors, events, drain."""

from __future__ import annotations

import logging
import secrets
import struct
from collections.abc import Mapping

import pytest
import trio
import trio.lowlevel
import trio.testing

from workerless import (
    Cacher,
    ComputationFailed,
    Entry,
    Event,
    Failed,
    Fetched,
    Hit,
    MemoryStore,
    Miss,
    Notice,
    Overloaded,
    Refreshed,
    Rejected,
    Stale,
    StillComputing,
    Stored,
    StoreError,
    StoreUnavailable,
)
from workerless.testing import capture_events


class Upstream:
    """A slow call that counts how often it runs and can be held open or made to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.release = trio.Event()
        self.hold = False
        self.fail = False

    async def __call__(self) -> str:
        self.calls += 1
        await trio.sleep(self.delay)
        if self.hold:
            await self.release.wait()
        if self.fail:
            raise ValueError("upstream said no")
        return f"value #{self.calls}"


async def test_slow_find_like_the_talk() -> None:
    """fetch computes on a miss, stores with the ttl, and serves the stored value after."""
    upstream = Upstream(delay=0.01)
    with trio.fail_after(5):
        async with Cacher(MemoryStore(), ttl=60) as cacher:
            first = await cacher.fetch("find:a", upstream)
            second = await cacher.fetch("find:a", upstream)
    assert first == second == "value #1"
    assert upstream.calls == 1


async def test_single_flight_hands_one_value_to_every_waiter() -> None:
    """Many concurrent callers of one cold key: one computation, everyone gets its value."""
    upstream = Upstream(delay=0.2)
    results: list[str] = []
    with trio.fail_after(5):
        async with Cacher() as cacher:

            async def caller() -> None:
                results.append(await cacher.fetch("k", upstream))

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(caller)
            stats = cacher.statistics()
    assert results == ["value #1"] * 100
    assert upstream.calls == 1
    assert (stats.computations, stats.misses, stats.collapsed) == (1, 100, 99)


async def test_deadline_raises_still_computing_and_computation_continues() -> None:
    """Past its deadline a caller gets StillComputing; the computation still fills the cache."""
    upstream = Upstream()
    upstream.hold = True
    with trio.fail_after(5):
        async with Cacher() as cacher:
            with pytest.raises(StillComputing) as info:
                await cacher.fetch("k", upstream, deadline=0.05)
            assert not info.value.collapsed
            with pytest.raises(StillComputing) as joined:
                await cacher.fetch("k", upstream, deadline=0.05)
            assert joined.value.collapsed
            upstream.release.set()
            result = await cacher.fetch_result("k", upstream)
            assert result.value == "value #1"
            assert result.source == "collapsed"
            later = await cacher.fetch_result("k", upstream)
    assert later.source == "hit"
    assert upstream.calls == 1


async def test_each_waiter_leaves_at_its_own_deadline(autojump_clock: trio.abc.Clock) -> None:
    """Waiters on one computation leave at their own deadlines (a sooner one joining later
    too), a cancelled one leaves alone, and the others get the value when it ends."""
    upstream = Upstream()
    upstream.hold = True
    left: dict[str, float] = {}
    got: list[str] = []
    with trio.fail_after(100):
        async with Cacher(hard_limit=1000) as cacher:
            start = trio.current_time()

            async def waiter(name: str, deadline: float | None) -> None:
                try:
                    got.append(await cacher.fetch("k", upstream, deadline=deadline))
                except StillComputing:
                    left[name] = trio.current_time() - start

            async def cancelled(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await cacher.fetch("k", upstream)
                left["cancelled"] = trio.current_time() - start

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter, "long", 30.0)
                nursery.start_soon(waiter, "unbounded", None)
                await trio.sleep(1)
                nursery.start_soon(waiter, "short", 2.0)
                scope = await nursery.start(cancelled)
                await trio.sleep(1)
                scope.cancel()
                await trio.sleep(10)
                upstream.release.set()
    assert left == {"short": pytest.approx(3.0), "cancelled": pytest.approx(2.0)}
    assert got == ["value #1", "value #1"]
    assert upstream.calls == 1


async def test_errors_reach_all_waiters_and_are_never_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A raising computation fails every waiter, is logged with its key, and is not stored."""
    upstream = Upstream(delay=0.1)
    upstream.fail = True
    failures: list[ComputationFailed] = []
    with trio.fail_after(5):
        async with Cacher() as cacher:

            async def caller() -> None:
                try:
                    await cacher.fetch("bad-key", upstream)
                except ComputationFailed as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(caller)
            upstream.fail = False
            assert await cacher.fetch("bad-key", upstream) == "value #2"
    assert len(failures) == 5
    assert all("upstream said no" in f.reason and not f.timed_out for f in failures)
    assert upstream.calls == 2
    assert any("bad-key" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


async def test_hard_limit_cancels_and_reports_timed_out() -> None:
    """A computation past the hard limit is cancelled; waiters get a timed-out failure."""
    upstream = Upstream()
    upstream.hold = True
    with trio.fail_after(5):
        async with Cacher(hard_limit=0.1) as cacher:
            with pytest.raises(ComputationFailed) as info:
                await cacher.fetch("k", upstream)
            assert info.value.timed_out
            assert cacher.statistics().running == 0


async def test_events_sync_and_async_listeners() -> None:
    """hit, miss, stored and failed reach sync and async listeners; a raising one is isolated."""
    seen_async: list[object] = []
    upstream = Upstream()
    with trio.fail_after(5):
        async with Cacher() as cacher:

            async def async_listener(event: object) -> None:
                seen_async.append(event)

            def broken(event: object) -> None:
                raise RuntimeError("listener bug")

            cacher.on("hit", async_listener)
            cacher.on("miss", broken)
            with capture_events(cacher) as events:
                await cacher.fetch("e", upstream)
                await cacher.fetch("e", upstream)
                upstream.fail = True
                with pytest.raises(ComputationFailed):
                    await cacher.fetch("f", upstream)
            await trio.testing.wait_all_tasks_blocked()
    assert [type(e) for e in events] == [Miss, Stored, Hit, Miss, Failed]
    assert events.of(Hit)[0].ttl is not None
    assert [type(e) for e in seen_async] == [Hit]
    with pytest.raises(ValueError, match="unknown event"):
        cacher.on("nope", print)  # type: ignore[arg-type]


async def test_subscriptions_by_event_type() -> None:
    """on(Hit, cb) gets hits only; on(Event, cb) gets everything; unsubscribing stops both."""
    hits: list[Hit] = []
    everything: list[Event] = []
    with trio.fail_after(5):
        async with Cacher() as cacher:
            stop_hits = cacher.on(Hit, hits.append)
            stop_all = cacher.on(Event, everything.append)
            await cacher.fetch("t", Upstream())
            await cacher.fetch("t", Upstream())
            stop_hits()
            stop_all()
            await cacher.fetch("t", Upstream())
    assert [h.key for h in hits] == ["t"]
    assert [type(e) for e in everything] == [Miss, Stored, Hit]
    with pytest.raises(TypeError, match="Event subclass"):
        cacher.on(int, print)  # type: ignore[call-overload]


async def test_misses_past_max_computations_are_rejected_at_once() -> None:
    """With max_computations running, a new key raises Overloaded; joins and hits still work."""
    upstream = Upstream()
    upstream.hold = True
    rejected: list[Rejected] = []
    with trio.fail_after(5):
        async with Cacher(max_computations=2) as cacher, trio.open_nursery() as nursery:
            cacher.on(Rejected, rejected.append)
            await cacher.fetch("warm", Upstream())
            for key in ("a", "b"):
                nursery.start_soon(cacher.fetch, key, upstream)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(Overloaded):
                await cacher.fetch("c", upstream)
            assert await cacher.fetch("warm", Upstream()) == "value #1"
            with pytest.raises(StillComputing):
                await cacher.fetch("a", upstream, deadline=0.01)
            upstream.release.set()
    assert upstream.calls == 2
    assert [(r.key, r.limit) for r in rejected] == [("c", 2)]
    assert cacher.statistics().rejected == 1


async def test_non_cacheable_results_are_shared_not_stored() -> None:
    """A value rejected by cacheable() goes to the waiters but the next call computes again."""
    upstream = Upstream()
    with trio.fail_after(5):
        async with Cacher() as cacher:
            first = await cacher.fetch_result("n", upstream, cacheable=lambda v: False)
            second = await cacher.fetch_result("n", upstream, cacheable=lambda v: False)
    assert (first.value, first.stored) == ("value #1", False)
    assert second.value == "value #2"


async def test_drain_answers_waiters_at_once_and_lets_computation_finish() -> None:
    """drain() frees every waiter with StillComputing(shutting_down); the value is still stored."""
    upstream = Upstream()
    upstream.hold = True
    store = MemoryStore()
    with trio.fail_after(5):
        async with Cacher(store, grace=5) as cacher:
            outcomes: list[StillComputing] = []

            async def waiter() -> None:
                try:
                    await cacher.fetch("d", upstream)
                except StillComputing as exc:
                    outcomes.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                cacher.drain()
            upstream.release.set()
        entry = await store.get("d")
    assert len(outcomes) == 2
    assert all(o.shutting_down for o in outcomes)
    assert entry is not None


async def test_not_running_is_a_clear_error() -> None:
    """Fetching from a Cacher that is not running says so instead of hanging."""
    with pytest.raises(RuntimeError, match="not running"):
        await Cacher().fetch("k", Upstream())


async def test_undecodable_stored_value_is_recomputed() -> None:
    """Garbage under a key (another app, an old version) is treated as a miss, not a crash."""
    store = MemoryStore()
    upstream = Upstream()
    with trio.fail_after(5):
        async with Cacher(store) as cacher:
            await store.set("g", b"\xff not json", 60)
            assert await cacher.fetch("g", upstream) == "value #1"


class FlakyStore(MemoryStore):
    """A memory store that can be switched off, counting the calls that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gets = 0

    async def get(self, key: str) -> Entry | None:
        self.gets += 1
        if self.down:
            raise StoreUnavailable("switched off")
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        if self.down:
            raise StoreUnavailable("switched off")
        return await super().set(key, value, ttl, epoch=epoch)


async def test_store_down_serves_computed_values_and_recovers(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """With the store down: values still computed, one warning, store probed once a second."""
    store = FlakyStore()
    upstream = Upstream()
    async with Cacher(store) as cacher:
        store.down = True
        first = await cacher.fetch_result("k", upstream)
        gets_after_failure = store.gets
        for _ in range(5):
            result = await cacher.fetch_result("k", upstream)
            assert not result.store_available
        assert store.gets == gets_after_failure  # known down: not asked again yet
        await trio.sleep(1.5)
        store.down = False
        await cacher.fetch_result("k", upstream)  # probe succeeds: computes and stores
        hit = await cacher.fetch_result("k", upstream)
    assert (first.value, first.stored, first.store_available) == ("value #1", False, False)
    assert hit.source == "hit"
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1


class CountingStore(MemoryStore):
    """A memory store whose reads yield like real I/O, counting reads and lease renewals."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.renewal_batches: list[int] = []

    async def get(self, key: str) -> Entry | None:
        self.gets += 1
        await trio.lowlevel.checkpoint()
        return await super().get(key)

    async def renew_leases(self, leases: Mapping[str, str], ttl: float) -> frozenset[str]:
        self.renewal_batches.append(len(leases))
        return await super().renew_leases(leases, ttl)


async def test_requests_joining_a_running_computation_do_not_read_the_store() -> None:
    """Once a key is computing here, later requests join it without one store read each."""
    store = CountingStore()
    upstream = Upstream()
    upstream.hold = True
    with trio.fail_after(5):
        async with Cacher(store) as cacher, trio.open_nursery() as nursery:
            nursery.start_soon(cacher.fetch, "k", upstream)
            await trio.testing.wait_all_tasks_blocked()
            reads_before = store.gets
            for _ in range(50):
                nursery.start_soon(cacher.fetch, "k", upstream)
            await trio.testing.wait_all_tasks_blocked()
            assert store.gets == reads_before
            upstream.release.set()
    assert upstream.calls == 1


async def test_leases_of_running_computations_are_renewed_together(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Computations longer than the lease keep it, renewed for all keys in one call per period."""
    store = CountingStore()
    upstream = Upstream(delay=3.0)
    async with Cacher(store, lease=0.6, hard_limit=10) as cacher, trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(cacher.fetch, f"k{i}", upstream)
        await trio.sleep(2.0)  # well past the 0.6 s lease
        for i in range(10):
            assert not (await store.acquire_lease(f"k{i}", secrets.token_hex(16), 1.0)).acquired
    assert upstream.calls == 10
    assert max(store.renewal_batches) == 10
    assert len(store.renewal_batches) < 20


async def test_invalidation_during_a_computation_keeps_its_result_out_of_the_store() -> None:
    """A value computed across an invalidation reaches its waiters but is not stored."""
    store = MemoryStore()
    upstream = Upstream()
    upstream.hold = True
    with trio.fail_after(5):
        async with Cacher(store) as cacher:
            results: list[Fetched[str]] = []

            async def waiter() -> None:
                results.append(await cacher.fetch_result("k", upstream))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                await cacher.invalidate("k")  # the data changed while the old value computed
                upstream.release.set()
            (result,) = results
            assert (result.value, result.stored) == ("value #1", False)
            assert await store.get("k") is None
            upstream.hold = False
            assert await cacher.fetch("k", upstream) == "value #2"
            assert await store.get("k") is not None


async def test_wait_idle_returns_when_the_last_of_several_computations_ends() -> None:
    """wait_idle() started during one computation returns after it and a later one both end."""
    first, second = Upstream(), Upstream()
    first.hold = second.hold = True
    idle = trio.Event()
    with trio.fail_after(5):
        async with Cacher() as cacher, trio.open_nursery() as nursery:
            nursery.start_soon(cacher.fetch, "a", first)
            await trio.testing.wait_all_tasks_blocked()

            async def watcher() -> None:
                await cacher.wait_idle()
                idle.set()

            nursery.start_soon(watcher)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(cacher.fetch, "b", second)
            await trio.testing.wait_all_tasks_blocked()
            first.release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert not idle.is_set()
            second.release.set()
            await idle.wait()


async def test_failure_notice_counts_only_from_the_lease_holder() -> None:
    """A waiter on another holder's lease ignores a failure notice carrying another token,
    and fails only on the holder's own; a waiter wakes when the holder's lease ends."""
    store = MemoryStore()
    holder = "a" * 32
    with trio.fail_after(5):
        async with Cacher(store, lease=30) as cacher, trio.open_nursery() as nursery:
            assert (await store.acquire_lease("k", holder, 10)).acquired
            outcome: list[object] = []

            async def waiter() -> None:
                try:
                    outcome.append(await cacher.fetch("k", Upstream()))
                except ComputationFailed as exc:
                    outcome.append(exc.reason)

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await store.publish(Notice("k", "failed", "forged", token="f" * 32))
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []
            await store.publish(Notice("k", "failed", "the real one", token=holder))
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == ["the real one"]

            assert (await store.acquire_lease("j", holder, 0.3)).acquired
            started = trio.current_time()
            assert await cacher.fetch("j", Upstream()) == "value #1"
    assert 0.3 <= trio.current_time() - started < 4  # at the lease's end, not on a 30 s timer


class Clocked:
    """A computation whose results count up, and that can be made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def __call__(self) -> str:
        self.calls += 1
        await trio.sleep(0.05)
        if self.fail:
            raise ValueError("upstream down")
        return f"v{self.calls}"


async def test_stale_value_is_served_at_once_while_one_refresh_runs() -> None:
    """Past its ttl, inside the stale window: 50 callers get the old value at once, one
    refresh runs, and the next caller gets the new value as a hit."""
    upstream = Clocked()
    with trio.fail_after(5):
        async with Cacher(ttl=0.2, stale=5, early_refresh=0) as cacher:
            await cacher.fetch("s", upstream)
            await trio.sleep(0.3)
            with capture_events(cacher) as events:
                results = []

                async def caller() -> None:
                    results.append(await cacher.fetch_result("s", upstream))

                async with trio.open_nursery() as nursery:
                    for _ in range(50):
                        nursery.start_soon(caller)
                await cacher.wait_idle()
            after = await cacher.fetch_result("s", upstream)
    assert {(r.value, r.source) for r in results} == {("v1", "stale")}
    assert all(r.ttl is not None and r.ttl < 0 for r in results)
    assert upstream.calls == 2
    assert (after.value, after.source) == ("v2", "hit")
    assert len(events.of(Stale)) == 50 and not events.of(Miss)
    assert [e.key for e in events.of(Refreshed)] == ["s"]


async def test_stale_if_error_serves_the_old_value_when_the_computation_fails() -> None:
    """Past the stale window, inside stale_if_error: a failed computation returns the old
    value (with the failure), and the next call tries the computation again."""
    upstream = Clocked()
    with trio.fail_after(5):
        async with Cacher(ttl=0.1, stale_if_error=5, early_refresh=0) as cacher:
            await cacher.fetch("e", upstream)
            await trio.sleep(0.2)
            upstream.fail = True
            with capture_events(cacher) as events:
                first = await cacher.fetch_result("e", upstream)
                second = await cacher.fetch_result("e", upstream)
            upstream.fail = False
            third = await cacher.fetch_result("e", upstream)
    assert (first.value, first.source, first.failure) == (
        "v1",
        "stale",
        "ValueError: upstream down",
    )
    assert second.value == "v1" and upstream.calls == 4
    assert (third.value, third.source) == ("v4", "computed")
    assert [e.failure for e in events.of(Stale)] == ["ValueError: upstream down"] * 2


async def test_outside_the_windows_a_failure_is_an_error() -> None:
    """With no stale windows, an expired value is gone: a failing computation raises."""
    upstream = Clocked()
    with trio.fail_after(5):
        async with Cacher(ttl=0.1, early_refresh=0) as cacher:
            await cacher.fetch("g", upstream)
            await trio.sleep(0.2)
            upstream.fail = True
            with pytest.raises(ComputationFailed):
                await cacher.fetch("g", upstream)


async def test_early_refresh_recomputes_a_hot_key_before_it_expires() -> None:
    """A key read continuously is refreshed before its ttl ends: no caller ever waits."""
    upstream = Clocked()
    sources: list[str] = []
    with trio.fail_after(10):
        # beta 4: with this 50 ms computation, refreshes start ~0.2-0.5 s before expiry, so a
        # loaded machine pausing this loop for a while still finds the key refreshed.
        async with Cacher(ttl=1.0, early_refresh=4) as cacher:
            await cacher.fetch("hot", upstream)
            end = trio.current_time() + 2
            while trio.current_time() < end:
                sources.append((await cacher.fetch_result("hot", upstream)).source)
                await trio.sleep(0.005)
    assert set(sources) == {"hit"}
    assert upstream.calls >= 2  # refreshed in the background before each expiry


async def test_corrupt_freshness_record_is_a_miss() -> None:
    """An entry whose freshness record is garbage (NaN windows, wrong magic) is recomputed."""
    store = MemoryStore()
    upstream = Clocked()
    nan_windows = b"WLF1" + struct.pack("!ddd8s", float("nan"), 0.0, 0.0, b"x" * 8) + b'"old"'
    with trio.fail_after(5):
        async with Cacher(store) as cacher:
            for planted in (nan_windows, b"WLF2" + nan_windows[4:], b'"bare json"'):
                await store.set("c", planted, 60)
                assert await cacher.fetch("c", upstream) == f"v{upstream.calls}"
                await cacher.invalidate("c")


class RefusingStore(MemoryStore):
    """A store that refuses (StoreError, not an outage) every read of one key."""

    async def get(self, key: str) -> Entry | None:
        if key == "refused":
            raise StoreError("NOPERM this user has no permissions to run the 'get' command")
        return await super().get(key)


async def test_a_refusal_is_that_calls_miss_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A StoreError on one read is logged and served as a miss; the store stays available
    and other keys are still hits."""
    upstream = Upstream()
    with trio.fail_after(5):
        async with Cacher(RefusingStore()) as cacher:
            await cacher.fetch("other", upstream)
            refused = await cacher.fetch_result("refused", upstream)
            other = await cacher.fetch_result("other", upstream)
            stats = cacher.statistics()
    assert refused.source == "computed" and refused.store_available
    assert other.source == "hit"
    assert stats.store_available
    assert "refused a call" in caplog.text and "NOPERM" in caplog.text
