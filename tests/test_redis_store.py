"""RedisStore against a real redis-server: values, leases, notices, faults and shutdown."""

from __future__ import annotations

import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import redis as redis_py
import trio
from servers import RedisServer, free_port, redis_server

from workerless import (
    Cacher,
    ComputationFailed,
    ConfigurationError,
    Notice,
    RedisStore,
    StoreUnavailable,
    store_from_url,
)

pytestmark = pytest.mark.redis

LISTENER_THREAD = "workerless-redis-notices"


@pytest.fixture
def redis_url(redis: RedisServer) -> str:
    """The session redis-server, flushed."""
    redis_py.Redis.from_url(redis.url).flushdb()
    return redis.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start again."""
    with redis_server() as server:
        yield server


@asynccontextmanager
async def running(store: RedisStore) -> AsyncIterator[RedisStore]:
    """``store`` opened, with its notice listener running, as a Cacher would run it."""
    await store.open()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            yield store
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


def listener_threads() -> int:
    return sum(t.name == LISTENER_THREAD and t.is_alive() for t in threading.enumerate())


# -- values -------------------------------------------------------------------------------


async def test_set_then_get_returns_value_and_remaining_ttl(redis_url: str) -> None:
    """A stored value comes back with its remaining ttl, read in the same round trip."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert await store.get("/a") is None
            await store.set("/a", b"\x00body", 30)
            entry = await store.get("/a")
            assert entry is not None
            assert entry.value == b"\x00body"
            assert entry.ttl is not None and 29 < entry.ttl <= 30


async def test_values_expire_after_their_ttl(redis_url: str) -> None:
    """A value is stored with PX: it is gone once its ttl (here 0.2 s) has passed."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            await store.set("/short", b"v", 0.2)
            assert await store.get("/short") is not None
            await trio.sleep(0.4)
            assert await store.get("/short") is None


async def test_set_with_non_positive_ttl_removes_the_value(redis_url: str) -> None:
    """Setting with ttl <= 0 leaves nothing stored, as MemoryStore does."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            await store.set("/a", b"v", 30)
            await store.set("/a", b"w", 0)
            assert await store.get("/a") is None


async def test_delete_reports_whether_the_key_was_there(redis_url: str) -> None:
    """delete removes a value and tells whether there was one."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            await store.set("/a", b"v", 30)
            assert await store.delete("/a") is True
            assert await store.delete("/a") is False
            assert await store.get("/a") is None


async def test_delete_prefix_treats_glob_metacharacters_literally(redis_url: str) -> None:
    """Prefix deletion matches the prefix literally, even when it holds * ? [ ] or \\."""
    prefix = "/x*[a]?\\/"
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            for key in (f"{prefix}1", f"{prefix}2", "/xyzab/9", "/other"):
                await store.set(key, b"v", 30)
            assert await store.delete_prefix(prefix) == 2
            assert await store.get(f"{prefix}1") is None
            assert await store.get("/xyzab/9") is not None
            assert await store.get("/other") is not None


async def test_delete_prefix_touches_only_this_stores_values(redis_url: str) -> None:
    """Prefix deletion spares leases and keys of another store prefix, even a glob-like one."""
    with trio.fail_after(5):
        async with (
            running(RedisStore(redis_url, prefix="app[1]*:")) as store,
            running(RedisStore(redis_url, prefix="app1X:")) as neighbour,
        ):
            client = redis_py.Redis.from_url(redis_url)
            # More than one SCAN page and one UNLINK batch.
            client.mset({f"app[1]*:v:/k{n}": b"v" for n in range(1200)})
            await neighbour.set("/k1", b"v", 30)
            assert await store.acquire_lease("/k1", "token", 30)
            assert await store.delete_prefix("") == 1200
            assert await neighbour.get("/k1") is not None
            assert not await store.acquire_lease("/k1", "other", 30)
            assert sorted(client.keys("*")) == [
                b"app1X:v:/k1",
                b"app[1]*:epoch",
                b"app[1]*:lease:/k1",
            ]


async def test_two_stores_on_one_redis_share_values(redis_url: str) -> None:
    """What one process stores, another process (another store instance) reads."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as one, running(RedisStore(redis_url)) as two:
            await one.set("/shared", b"v", 30)
            entry = await two.get("/shared")
            assert entry is not None and entry.value == b"v"
            assert await two.delete("/shared")
            await until_gone(one, "/shared")


async def until_gone(store: RedisStore, key: str) -> None:
    """Wait for an invalidation made elsewhere to reach ``store`` (pub/sub: milliseconds)."""
    while await store.get(key) is not None:  # noqa: ASYNC110 - polling the store is the test
        await trio.sleep(0.005)


async def test_set_with_an_epoch_refuses_after_any_invalidation(redis_url: str) -> None:
    """set(epoch=e) stores only if no delete or delete_prefix (in any process) came after e."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as one, running(RedisStore(redis_url)) as two:
            epoch = await one.epoch()
            assert await one.set("/a", b"v", 30, epoch=epoch)
            await two.delete("/elsewhere")
            assert await one.epoch() == epoch + 1
            assert not await one.set("/b", b"v", 30, epoch=epoch)
            assert await two.get("/b") is None
            await two.delete_prefix("/x")
            assert not await one.set("/b", b"v", 30, epoch=epoch + 1)
            assert await one.set("/b", b"v", 30, epoch=await one.epoch())


# -- the near cache -----------------------------------------------------------------------


async def test_near_cache_serves_recent_hits_without_redis_for_near_ttl(redis_url: str) -> None:
    """A value read once is served from this process for near_ttl s, never past that."""
    raw = redis_py.Redis.from_url(redis_url)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url, near_ttl=0.3)) as store:
            await store.set("/near", b"v", 30)
            raw.delete("workerless:v:/near")  # behind the store's back: no announcement
            entry = await store.get("/near")
            assert entry is not None and entry.value == b"v"
            assert entry.ttl is not None and 29 < entry.ttl <= 30  # Redis's ttl, not near_ttl
            await trio.sleep(0.35)
            assert await store.get("/near") is None


async def test_near_cache_off_reads_redis_every_time(redis_url: str) -> None:
    """near_ttl=0: every read goes to Redis."""
    raw = redis_py.Redis.from_url(redis_url)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url, near_ttl=0)) as store:
            await store.set("/far", b"v", 30)
            raw.delete("workerless:v:/far")
            assert await store.get("/far") is None


async def test_invalidation_elsewhere_reaches_the_near_cache(redis_url: str) -> None:
    """delete and delete_prefix in another process drop this process's near entries."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url, near_ttl=60)) as one, running(
            RedisStore(redis_url)
        ) as two:
            for key in ("/x/a", "/x/b", "/y"):
                await one.set(key, b"v", 30)
                assert await one.get(key) is not None
            await two.delete("/y")
            await until_gone(one, "/y")
            await two.delete_prefix("/x/")
            await until_gone(one, "/x/a")
            await until_gone(one, "/x/b")


async def test_near_cache_is_not_trusted_while_redis_is_away(own_redis: RedisServer) -> None:
    """With Redis stopped (invalidations could be missed) reads fail instead of going stale."""
    with trio.fail_after(15):
        async with running(RedisStore(own_redis.url, near_ttl=60)) as store:
            await store.set("/k", b"v", 30)
            assert await store.get("/k") is not None
            own_redis.stop()
            with pytest.raises(StoreUnavailable):
                while True:  # until the listener notices the outage; then never a near hit
                    await store.get("/k")
                    await trio.sleep(0.05)
            with pytest.raises(StoreUnavailable):
                await store.get("/k")


# -- leases -------------------------------------------------------------------------------


async def test_lease_is_exclusive_until_released_by_its_holder(redis_url: str) -> None:
    """One token holds a lease; a release with a wrong token keeps it; the holder's frees it."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert await store.acquire_lease("/k", "mine", 30)
            assert not await store.acquire_lease("/k", "theirs", 30)
            await store.release_lease("/k", "theirs")
            assert not await store.acquire_lease("/k", "theirs", 30)
            await store.release_lease("/k", "mine")
            assert await store.acquire_lease("/k", "theirs", 30)


async def test_lease_renewal_only_by_its_holder(redis_url: str) -> None:
    """renew_lease extends the holder's lease and fails for any other token or a free key."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert not await store.renew_lease("/k", "mine", 30)
            assert await store.acquire_lease("/k", "mine", 0.3)
            assert not await store.renew_lease("/k", "theirs", 30)
            assert await store.renew_lease("/k", "mine", 30)
            await trio.sleep(0.5)  # past the first ttl: the renewal kept it
            assert not await store.acquire_lease("/k", "theirs", 30)


async def test_renew_leases_in_one_call_reports_the_lost(redis_url: str) -> None:
    """renew_leases extends every lease still held by its token and names the ones lost."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert await store.acquire_lease("/a", "ta", 0.3)
            assert await store.acquire_lease("/b", "tb", 0.3)
            assert await store.acquire_lease("/c", "someone-else", 30)
            lost = await store.renew_leases({"/a": "ta", "/b": "tb", "/c": "tc", "/d": "td"}, 30)
            assert lost == {"/c", "/d"}
            await trio.sleep(0.5)  # past the first ttl: the batch renewal kept /a and /b
            assert not await store.acquire_lease("/a", "other", 30)
            assert not await store.acquire_lease("/b", "other", 30)
            assert await store.renew_leases({}, 30) == frozenset()


async def test_lease_expires_after_its_ttl(redis_url: str) -> None:
    """A holder that never releases (a dead process) loses the lease when its ttl passes."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert await store.acquire_lease("/k", "dead", 0.2)
            assert not await store.acquire_lease("/k", "alive", 30)
            await trio.sleep(0.4)
            assert await store.acquire_lease("/k", "alive", 30)
            assert not await store.renew_lease("/k", "dead", 30)


async def test_reacquiring_with_the_same_token_keeps_the_lease(redis_url: str) -> None:
    """Asking again with the holder's own token succeeds (renewing), as in MemoryStore."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert await store.acquire_lease("/k", "mine", 30)
            assert await store.acquire_lease("/k", "mine", 30)


async def test_leases_are_shared_between_stores(redis_url: str) -> None:
    """A lease taken through one store instance (process) excludes every other."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as one, running(RedisStore(redis_url)) as two:
            assert await one.acquire_lease("/k", "one", 30)
            assert not await two.acquire_lease("/k", "two", 30)
            await one.release_lease("/k", "one")
            assert await two.acquire_lease("/k", "two", 30)


# -- notices ------------------------------------------------------------------------------


async def test_notice_reaches_a_watch_in_the_same_process(redis_url: str) -> None:
    """A published notice reaches the watches of its key in this process, and no other."""
    notice = Notice("/k", "failed", "upstream said no", cached=False)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            with store.watch("/k") as watch, store.watch("/other") as other:
                await store.publish(notice)
                assert await watch.wait() == notice
                with trio.move_on_after(0.2) as quiet:
                    await other.wait()
                assert quiet.cancelled_caught


async def test_own_notice_never_reaches_a_watch_registered_after_it(redis_url: str) -> None:
    """A notice is for the watches present when it was sent: this store's own notice coming
    back on the channel does not reach a watch registered since (it re-checks instead)."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            await store.publish(Notice("/k", "failed", "an old computation"))
            with store.watch("/k") as watch:
                with trio.move_on_after(0.3) as quiet:
                    await watch.wait()
                assert quiet.cancelled_caught


async def test_releasing_a_lease_wakes_local_watches(redis_url: str) -> None:
    """The holder giving a lease up wakes this process's watchers of the key (to take it);
    a release with a wrong token wakes nobody."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            assert await store.acquire_lease("/k", "holder", 30)
            with store.watch("/k") as watch:
                await store.release_lease("/k", "stranger")
                with trio.move_on_after(0.2) as quiet:
                    await watch.wait()
                assert quiet.cancelled_caught
                await store.release_lease("/k", "holder")
                notice = await watch.wait()
            assert (notice.key, notice.outcome) == ("/k", "abandoned")


async def test_notice_reaches_a_watch_of_another_store(redis_url: str) -> None:
    """A notice published by one process wakes the watches on that key in another."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as one, running(RedisStore(redis_url)) as two:
            with two.watch("/k") as first, two.watch("/k") as second:
                await one.publish(Notice("/k", "stored"))
                assert await first.wait() == Notice("/k", "stored")
                assert await second.wait() == Notice("/k", "stored")


async def test_notices_stay_within_their_prefix(redis_url: str) -> None:
    """Apps sharing one Redis under different prefixes do not see each other's notices."""
    with trio.fail_after(5):
        async with (
            running(RedisStore(redis_url, prefix="a:")) as a,
            running(RedisStore(redis_url, prefix="b:")) as b,
        ):
            with a.watch("/k") as watch_a, b.watch("/k") as watch_b:
                await b.publish(Notice("/k", "stored"))
                assert await watch_b.wait() == Notice("/k", "stored")
                await a.publish(Notice("/k", "abandoned", "first for a"))
                assert await watch_a.wait() == Notice("/k", "abandoned", "first for a")


async def test_malformed_messages_on_the_channel_are_ignored(redis_url: str) -> None:
    """Junk published on the notice channel is skipped and the listener keeps delivering."""
    client = redis_py.Redis.from_url(redis_url)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            with store.watch("/k") as watch:
                for junk in (b"not json", b"[1]", b'{"key":"/k","outcome":"exploded"}'):
                    client.publish("workerless:notices", junk)
                await store.publish(Notice("/k", "stored"))
                assert await watch.wait() == Notice("/k", "stored")


async def test_cachers_in_two_processes_compute_once_and_wake_by_push(redis_url: str) -> None:
    """Two Cachers on two stores compute a key once; the other is woken by the notice at once."""
    computations = 0

    async def compute() -> str:
        nonlocal computations
        computations += 1
        await trio.sleep(0.3)
        return "value"

    results: list[str] = []
    with trio.fail_after(5):
        # A 30 s lease: a waiter answered within the deadline was woken by push, not by a timer.
        async with (
            Cacher(RedisStore(redis_url), lease=30) as one,
            Cacher(RedisStore(redis_url), lease=30) as two,
            trio.open_nursery() as nursery,
        ):
            for cacher in (one, two, one, two):
                nursery.start_soon(fetch_into, cacher, compute, results)
                await trio.sleep(0.02)
    assert results == ["value"] * 4
    assert computations == 1


async def test_a_call_right_after_a_failure_computes_again_at_once(redis_url: str) -> None:
    """Each fetch made as soon as the previous one failed computes again, promptly: it never
    gets the earlier failure's notice late, nor waits for the earlier lease to expire."""
    computations = 0

    async def compute() -> str:
        nonlocal computations
        computations += 1
        raise RuntimeError("upstream down")

    with trio.fail_after(10):
        async with Cacher(RedisStore(redis_url), lease=30) as cacher:
            for _ in range(20):
                with pytest.raises(ComputationFailed, match="upstream down"):
                    await cacher.fetch("/k", compute)
    assert computations == 20


async def fetch_into(
    cacher: Cacher[str], compute: Callable[[], Awaitable[str]], results: list[str]
) -> None:
    results.append(await cacher.fetch("/k", compute))


# -- faults -------------------------------------------------------------------------------


async def test_open_on_unreachable_url_names_it() -> None:
    """Redis unreachable at start-up: open() raises StoreUnavailable naming the URL."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with trio.fail_after(5), pytest.raises(StoreUnavailable, match="cannot reach Redis at") as info:
        await RedisStore(url).open()
    assert url in str(info.value)
    assert isinstance(info.value.__cause__, redis_py.ConnectionError)


PASSWORD_URLS = [
    "redis://:s3cr%3Dt@127.0.0.1:{port}/0",
    "redis://admin:s3cr%3Dt@127.0.0.1:{port}/0",
    "redis://127.0.0.1:{port}/0?password=s3cr%3Dt",
]


@pytest.mark.parametrize("template", PASSWORD_URLS)
async def test_password_never_appears_in_errors_or_repr(
    template: str, own_redis: RedisServer
) -> None:
    """A password in the URL is redacted from errors, their tracebacks and the store's repr,
    whether Redis is unreachable or refuses the password."""
    redis_py.Redis.from_url(own_redis.url).config_set("requirepass", "right")
    for port in (free_port(), own_redis.port):
        store = RedisStore(template.format(port=port))
        with trio.fail_after(5), pytest.raises(StoreUnavailable) as info:
            await store.open()
        shown = "".join(traceback.format_exception(info.value)) + repr(store)
        assert "s3cr" not in shown
        assert "***" in str(info.value)
        assert f"127.0.0.1:{port}" in str(info.value)


async def test_password_in_the_url_is_used(own_redis: RedisServer) -> None:
    """A store whose URL carries the right password works against a Redis requiring one."""
    redis_py.Redis.from_url(own_redis.url).config_set("requirepass", "r%ght")
    with trio.fail_after(5):
        async with running(RedisStore(f"redis://:r%25ght@127.0.0.1:{own_redis.port}/0")) as store:
            await store.set("/k", b"v", 30)
            with store.watch("/k") as watch:
                await store.publish(Notice("/k", "stored"))
                assert await watch.wait() == Notice("/k", "stored")
        assert "r%25ght" not in repr(store) and "r%ght" not in repr(store)


async def test_calls_fail_fast_while_redis_is_down_and_recover_after_restart(
    own_redis: RedisServer,
) -> None:
    """While redis-server is stopped every call raises StoreUnavailable within about 2 s;
    after it starts again on the same port, the same store works with no reopening."""
    with trio.fail_after(30):
        async with running(RedisStore(own_redis.url)) as store:
            await store.set("/k", b"v", 30)
            await trio.to_thread.run_sync(own_redis.stop)
            calls = [
                store.get("/k"),
                store.set("/k", b"v", 30),
                store.delete("/k"),
                store.delete_prefix("/"),
                store.acquire_lease("/k", "t", 30),
                store.renew_lease("/k", "t", 30),
                store.release_lease("/k", "t"),
                store.publish(Notice("/k", "stored")),
            ]
            for call in calls:
                started = trio.current_time()
                with pytest.raises(StoreUnavailable, match=r"lost Redis at redis://127\.0\.0\.1"):
                    await call
                # Fast: no redis-py retries (its default retries take about 4 s).
                assert trio.current_time() - started < 3.5
            await trio.to_thread.run_sync(own_redis.start)
            await store.set("/k", b"again", 30)
            entry = await store.get("/k")
            assert entry is not None and entry.value == b"again"
            assert await store.acquire_lease("/k", "t", 30)


async def test_listener_survives_a_restart_and_wakes_watches_that_may_have_missed_notices(
    own_redis: RedisServer,
) -> None:
    """After Redis comes back the listener resubscribes, wakes every local watch with an
    'abandoned' notice (notices sent meanwhile are lost) and delivers new notices again."""
    with trio.fail_after(20):
        async with running(RedisStore(own_redis.url)) as store:
            with store.watch("/k") as watch:
                await trio.to_thread.run_sync(own_redis.stop)
                await trio.sleep(0.3)
                await trio.to_thread.run_sync(own_redis.start)
                notice = await watch.wait()
            assert notice.key == "/k" and notice.outcome == "abandoned"
            async with running(RedisStore(own_redis.url)) as other:
                with store.watch("/k") as watch:
                    await other.publish(Notice("/k", "stored"))
                    assert await watch.wait() == Notice("/k", "stored")


async def test_start_up_is_not_held_when_redis_dies_before_the_listener_subscribes(
    own_redis: RedisServer,
) -> None:
    """run() reports started as soon as its first attempt to subscribe fails."""
    store = RedisStore(own_redis.url, socket_timeout=5, connect_timeout=5)
    with trio.fail_after(10):
        await store.open()
        await trio.to_thread.run_sync(own_redis.stop)
        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            await nursery.start(store.run)
            assert trio.current_time() - started < 5  # not the 10 s the timeouts allow
            nursery.cancel_scope.cancel()
        await store.aclose()


async def test_listener_stops_promptly_on_close(redis_url: str) -> None:
    """Cancelling run() and closing the store ends the listener thread within a second."""
    before = listener_threads()
    store = RedisStore(redis_url)
    with trio.fail_after(5):
        await store.open()
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            assert listener_threads() == before + 1
            nursery.cancel_scope.cancel()
        started = trio.current_time()
        await store.aclose()
        assert trio.current_time() - started < 3  # not Quart's 5 s background shutdown
    assert listener_threads() == before


async def test_a_closed_store_can_be_opened_again(redis_url: str) -> None:
    """open/run/aclose may be repeated (an app started twice in one process)."""
    store = RedisStore(redis_url)
    with trio.fail_after(5):
        for n in range(2):
            async with running(store):
                with store.watch("/k") as watch:
                    await store.publish(Notice("/k", "stored", reason=str(n)))
                    assert (await watch.wait()).reason == str(n)


def test_store_url_builds_a_redis_store_with_its_prefix(redis_url: str) -> None:
    """WORKERLESS_STORE=redis://... makes a RedisStore using the configured key prefix."""
    store = store_from_url(redis_url, prefix="shop:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "shop:"
    assert repr(store) == f"RedisStore({redis_url!r}, prefix='shop:')"


def test_malformed_url_is_a_configuration_error_without_its_password() -> None:
    """A URL redis-py cannot parse is a ConfigurationError, its password redacted."""
    with pytest.raises(ConfigurationError, match=r"redis://:\*\*\*@127\.0\.0\.1:port/0") as info:
        RedisStore("redis://:s3cret@127.0.0.1:port/0")
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
