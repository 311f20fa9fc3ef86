"""RedisStore against a real redis-server: what the store contract does not cover (near cache,
listener, prefixes, outages, refusals, planted data, redaction); the contract is run in
test_store_contract.py."""

from __future__ import annotations

import logging
import secrets
import subprocess
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_py
import trio
from servers import RedisServer, free_port, redis_server, wait_for_port

from workerless import (
    Cacher,
    ComputationFailed,
    ConfigurationError,
    Notice,
    RedisStore,
    StoreError,
    StoreUnavailable,
    store_from_url,
)
from workerless._redis_keys import KeyLayout
from workerless.testing import running_store

pytestmark = pytest.mark.redis

LISTENER_THREAD = "workerless-redis-notices"
KEYS = KeyLayout("workerless:")  # the default prefix's key names, for planting data


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


running = running_store


def token() -> str:
    return secrets.token_hex(16)


def listener_threads() -> int:
    return sum(t.name == LISTENER_THREAD and t.is_alive() for t in threading.enumerate())


# -- values -------------------------------------------------------------------------------


async def test_delete_prefix_touches_only_this_stores_values(redis_url: str) -> None:
    """Prefix deletion spares leases and keys of another store prefix, even a glob-like one."""
    with trio.fail_after(5):
        async with (
            running(RedisStore(redis_url, prefix="app[1]*:")) as store,
            running(RedisStore(redis_url, prefix="app1X:")) as neighbour,
        ):
            client = redis_py.Redis.from_url(redis_url)
            # More than one SCAN page and one UNLINK batch.
            client.mset({store.keys.value(f"/k{n}"): b"v" for n in range(1200)})
            await neighbour.set("/k1", b"v", 30)
            assert (await store.acquire_lease("/k1", token(), 30)).acquired
            assert await store.delete_prefix("") == 1200
            assert await neighbour.get("/k1") is not None
            assert not (await store.acquire_lease("/k1", token(), 30)).acquired
            expected = {neighbour.keys.value("/k1"), store.keys.lease("/k1"), *store.keys.epochs}
            assert {name.decode() for name in client.keys("*")} == expected


async def test_set_with_an_epoch_refuses_after_an_invalidation_elsewhere(redis_url: str) -> None:
    """set(key, epoch=e) stores only if no delete of the key's bucket or delete_prefix, in
    any process, came after e; a delete in another bucket leaves it alone."""
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as one, running(RedisStore(redis_url)) as two:
            bucket = one.keys.bucket("/b")
            same = next(k for k in (f"/s{n}" for n in range(10**5)) if one.keys.bucket(k) == bucket)
            other = next(k for k in (f"/o{n}" for n in range(9)) if one.keys.bucket(k) != bucket)
            epoch = await one.epoch("/b")
            await two.delete(other)
            assert await one.epoch("/b") == epoch
            await two.delete(same)
            assert await one.epoch("/b") == epoch + 1
            assert not await one.set("/b", b"v", 30, epoch=epoch)
            assert await two.get("/b") is None
            await two.delete_prefix("/x")
            assert not await one.set("/b", b"v", 30, epoch=epoch + 1)
            assert await one.set("/b", b"v", 30, epoch=await one.epoch("/b"))


# -- the near cache -----------------------------------------------------------------------


async def test_near_cache_serves_recent_hits_without_redis_for_near_ttl(redis_url: str) -> None:
    """A value read once is served from this process for near_ttl s, never past that."""
    raw = redis_py.Redis.from_url(redis_url)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url, near_ttl=0.3)) as store:
            await store.set("/near", b"v", 30)
            raw.delete(KEYS.value("/near"))  # behind the store's back: no announcement
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
            raw.delete(KEYS.value("/far"))
            assert await store.get("/far") is None


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


# -- notices ------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "template", ["redis+cluster://u:s3cret@127.0.0.1:{port}", "redis+sentinel://127.0.0.1:{port}/c"]
)
async def test_open_on_an_unreachable_cluster_or_sentinel_is_an_outage(template: str) -> None:
    """No node of a cluster, or no sentinel, reachable at start-up: StoreUnavailable naming
    the URL (password hidden), not a refusal and not a foreign exception."""
    url = template.format(port=free_port())
    with trio.fail_after(10), pytest.raises(StoreUnavailable) as info:
        await RedisStore(url).open()
    assert url.replace("s3cret", "***") in str(info.value) and "s3cret" not in str(info.value)


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
    whether Redis is unreachable (an outage) or refuses the password (a refusal)."""
    redis_py.Redis.from_url(own_redis.url).config_set("requirepass", "right")
    for port, error in ((free_port(), StoreUnavailable), (own_redis.port, StoreError)):
        store = RedisStore(template.format(port=port))
        with trio.fail_after(5), pytest.raises(error) as info:
            await store.open()
        assert (error is StoreError) != isinstance(info.value, StoreUnavailable)
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
                store.acquire_lease("/k", token(), 30),
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
            assert (await store.acquire_lease("/k", token(), 30)).acquired


async def test_listener_survives_a_restart_and_wakes_watches_that_may_have_missed_notices(
    own_redis: RedisServer,
) -> None:
    """After Redis comes back the listener resubscribes, wakes every local watch with an
    'abandoned' notice (notices sent meanwhile are lost) and delivers new notices again."""
    with trio.fail_after(20):
        async with running(RedisStore(own_redis.url)) as store:
            with store.watch("/k") as watch:
                await trio.to_thread.run_sync(own_redis.stop)
                assert (await watch.wait()).reason == "store connection lost"
            with store.watch("/k") as watch:
                await trio.to_thread.run_sync(own_redis.start)
                notice = await watch.wait()
            assert notice == Notice("/k", "abandoned", "notice listener reconnected")
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


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://u:s3cret@127.0.0.1:26379",  # no service name
        "redis+sentinel://u:s3cret@127.0.0.1:26379/cache/zero",
        "redis+sentinel://u:s3cret@127.0.0.1/cache",  # no port
        "redis+cluster://u:s3cret@127.0.0.1:7000,127.0.0.1:x",
        "redis+cluster://u:s3cret@127.0.0.1:7000/0",  # a cluster has no database number
        "redis+cluster://u:s3cret@127.0.0.1:7000?db=1",
    ],
)
def test_malformed_sentinel_and_cluster_urls_say_the_expected_form(url: str) -> None:
    """A Sentinel or Cluster URL of the wrong shape is a ConfigurationError giving the form,
    with its password redacted, raised when the store is built (nothing is contacted)."""
    with pytest.raises(ConfigurationError, match=r"u:\*\*\*@127") as info:
        store_from_url(url)
    assert "s3cret" not in str(info.value)
    assert f"{url.partition(':')[0]}://[user:pass@]host:port[,host:port...]" in str(info.value)


def test_sentinel_and_cluster_urls_name_their_topology() -> None:
    """store_from_url accepts both forms, several hosts included, without connecting."""
    sentinel = store_from_url("redis+sentinel://a:1,[::1]:2/cache/3")
    cluster = store_from_url("redis+cluster://u:p@h1:7000,h2:7001")
    assert isinstance(sentinel, RedisStore) and sentinel.topology == "sentinel"
    assert isinstance(cluster, RedisStore) and cluster.topology == "cluster"
    assert "p@" not in repr(cluster)
    with pytest.raises(ConfigurationError, match="braces"):
        RedisStore("redis+cluster://h1:7000", prefix="app{1}:")


# -- bounds, acknowledgements, connection loss ---------------------------------------------


async def test_near_cache_stays_within_its_byte_bound_and_empties_at_near_ttl(
    redis_url: str,
) -> None:
    """Many distinct values read through the store never hold more than near_max_bytes
    near; near_ttl later they are gone although nobody touched them again."""
    value = b"x" * 64 * 1024
    with trio.fail_after(20):
        store = RedisStore(redis_url, near_ttl=0.5, near_max_bytes=1024 * 1024)
        async with running(store):
            for n in range(100):
                await store.set(f"/v{n}", value, 30)
                assert await store.get(f"/v{n}") is not None
                assert store.near_nbytes <= 1024 * 1024
            assert store.near_nbytes > 512 * 1024
            await trio.sleep(0.6)
            assert store.near_nbytes == 0


async def test_an_invalidation_waits_boundedly_for_a_silent_listener(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber that never acknowledges holds delete for invalidation_wait, then a warning
    says how many processes stayed silent; live stores' acknowledgements do not warn."""
    silent = redis_py.Redis.from_url(redis_url).pubsub()
    silent.subscribe("workerless:notices")
    try:
        with trio.fail_after(5):
            async with (
                running(RedisStore(redis_url, invalidation_wait=0.3)) as store,
                running(RedisStore(redis_url)),
            ):
                started = trio.current_time()
                await store.delete_prefix("/p/")
                assert trio.current_time() - started >= 0.3
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("1 of 3 processes" in m and "acknowledge" in m for m in warnings)
    finally:
        silent.close()


async def test_losing_the_connection_wakes_every_watch_at_once(own_redis: RedisServer) -> None:
    """When the notice listener loses Redis, every local watch gets 'abandoned' right away, so
    waiters on another process's computation fall back instead of waiting out its lease."""
    with trio.fail_after(10):
        async with running(RedisStore(own_redis.url)) as store:
            with store.watch("/a") as a, store.watch("/b") as b:
                assert own_redis.proc is not None
                own_redis.proc.kill()
                notices = [await a.wait(), await b.wait()]
            assert [n.outcome for n in notices] == ["abandoned", "abandoned"]
            assert notices[0].reason == "store connection lost"
            own_redis.proc.wait()
            own_redis.proc = None


# -- data planted in Redis by someone else ------------------------------------------------


async def test_a_value_of_the_wrong_type_is_that_keys_miss_only(redis_url: str) -> None:
    """RPUSH under a value key: that key reads as a miss, every other key works, set heals it."""
    raw = redis_py.Redis.from_url(redis_url)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url, near_ttl=0)) as store:
            await store.set("/good", b"v", 30)
            raw.rpush(KEYS.value("/bad"), "a")
            for _ in range(3):
                assert await store.get("/bad") is None
                assert await store.get("/good") is not None
            assert await store.set("/bad", b"healed", 30, epoch=await store.epoch("/bad"))
            entry = await store.get("/bad")
            assert entry is not None and entry.value == b"healed"


async def test_a_huge_planted_value_is_never_transferred(redis_url: str) -> None:
    """A 64 MB value planted under a key reads as a miss without crossing the network."""
    raw = redis_py.Redis.from_url(redis_url)
    raw.setrange(KEYS.value("/huge"), 64 * 1024 * 1024 - 1, b"x")  # built inside Redis

    def sent() -> int:
        return int(raw.info("stats")["total_net_output_bytes"])

    with trio.fail_after(10):
        async with running(RedisStore(redis_url)) as store:
            before = sent()
            assert await store.get("/huge") is None
            assert sent() - before < 1024 * 1024
    raw.delete(KEYS.value("/huge"))


@pytest.mark.parametrize("plant", ["string", "list"])
async def test_a_corrupt_epoch_is_repaired_by_the_next_reader(redis_url: str, plant: str) -> None:
    """An epoch that is not an integer (or not a string at all) is overwritten with a larger
    integer when read; deletes and epoch-guarded sets go on working."""
    raw = redis_py.Redis.from_url(redis_url)
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            epoch = store.keys.epoch("/a")
            for _ in range(2):
                if plant == "string":
                    raw.set(epoch, "x")
                else:
                    raw.delete(epoch)
                    raw.rpush(epoch, "a")
                assert not await store.set("/a", b"v", 30, epoch=0)
                repaired = await store.epoch("/a")
                assert repaired > 1_000_000 and raw.get(epoch) == str(repaired).encode()
                assert await store.set("/a", b"v", 30, epoch=repaired)
            raw.set(epoch, "x")
            assert await store.delete("/a")
            assert await store.epoch("/a") > repaired


async def test_a_planted_notice_is_delivered_with_its_own_token(redis_url: str) -> None:
    """A notice published by someone else carries its token to the watcher (who can tell it
    is not the holder's); one with a token of the wrong form is dropped."""
    raw = redis_py.Redis.from_url(redis_url)
    fake = token()
    with trio.fail_after(5):
        async with running(RedisStore(redis_url)) as store:
            with store.watch("/k") as watch:
                base = '{"key":"/k","outcome":"failed","reason":"fake","origin":"x","token":'
                raw.publish("workerless:notices", base + '"not-a-token"}')
                raw.publish("workerless:notices", base + f'"{fake}"}}')
                notice = await watch.wait()
    assert notice == Notice("/k", "failed", "fake", token=fake)


# -- refusals: Redis Cluster on a plain URL ---------------------------------------------


@pytest.fixture
def cluster_node_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server in cluster mode serving no hash slots, on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--cluster-enabled", "yes", "--dir", str(tmp_path),
         "--cluster-port", str(free_port())],  # else port + 10000, maybe past 65535
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_redis_cluster_is_refused_at_start_up(cluster_node_url: str) -> None:
    """A Redis Cluster node fails open() with a StoreError saying Cluster is not supported."""
    with trio.fail_after(10), pytest.raises(StoreError, match="Redis Cluster is not supported"):
        await RedisStore(cluster_node_url).open()
