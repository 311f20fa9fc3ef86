"""Least-privilege ACL users on a real redis-server: exactly the README's rule runs the whole
store contract; a user missing one permission fails start-up with a message naming it."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_py
import trio
from servers import RedisServer, redis_server
from test_store_contract import plant_in_redis

from workerless import Notice, RedisStore, Store, StoreError, StoreUnavailable
from workerless.testing import Plant, StoreContract, running_store

pytestmark = pytest.mark.redis

running = running_store


def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, whose users it may change."""
    with redis_server() as server:
        yield server


# Every permission RedisStore needs, as tested here (README: the least-privilege ACL rule).
ACL_RULE = (
    "resetkeys ~workerless:* resetchannels &workerless:* -@all +ping +get +set +del +unlink "
    "+incr +pexpire +pttl +strlen +publish +subscribe +unsubscribe +scan +evalsha "
    "+script|load +client|setname"
)


def acl_url(server: RedisServer, user: str, rule: str) -> str:
    admin = redis_py.Redis.from_url(server.url)
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", ">pw", *rule.split())
    return f"redis://{user}:pw@127.0.0.1:{server.port}/0"


async def test_a_least_privileged_acl_user_can_run_the_store(own_redis: RedisServer) -> None:
    """A user with exactly ACL_RULE passes the start-up check and runs every operation."""
    url = acl_url(own_redis, "wl", ACL_RULE)
    with trio.fail_after(10):
        async with running(RedisStore(url)) as store, running(RedisStore(url)) as peer:
            mine = token()
            assert (await store.acquire_lease("/k", mine, 30)).acquired
            assert await store.renew_leases({"/k": mine}, 30) == frozenset()
            assert await store.set("/k", b"v", 30, epoch=await store.epoch("/k"))
            assert (await peer.get("/k")) is not None
            with peer.watch("/k") as watch:
                await store.release_lease("/k", mine)
                await store.publish(Notice("/k", "stored", token=mine))
                assert (await watch.wait()).token == mine
            assert await store.delete("/k")
            assert await store.delete_prefix("/") == 0


@pytest.mark.parametrize("missing", ["+evalsha", "+strlen", "+script|load", "+subscribe"])
async def test_start_up_names_a_missing_acl_permission(
    own_redis: RedisServer, missing: str
) -> None:
    """open() fails with StoreError (not an outage) naming the command the user lacks."""
    url = acl_url(own_redis, "narrow", ACL_RULE.replace(f" {missing}", ""))
    with trio.fail_after(10), pytest.raises(StoreError) as info:
        await RedisStore(url).open()
    assert not isinstance(info.value, StoreUnavailable)
    assert f"lacks permission for '{missing[1:]}'" in str(info.value)
    assert "'narrow'" in str(info.value) and "pw@" not in str(info.value)


async def test_start_up_names_missing_key_and_channel_patterns(own_redis: RedisServer) -> None:
    """A user whose key or channel pattern misses the prefix is told which pattern to add."""
    for pattern in ("~workerless:*", "&workerless:*"):
        rule = ACL_RULE.replace(f" {pattern}", f" {pattern[0]}other:*")
        with trio.fail_after(10), pytest.raises(StoreError, match=re.escape(f"add {pattern}")):
            await RedisStore(acl_url(own_redis, "narrow", rule)).open()


async def test_a_permission_revoked_later_is_a_refusal_not_an_outage(
    own_redis: RedisServer,
) -> None:
    """A NOPERM answer while running raises StoreError, not StoreUnavailable."""
    url = acl_url(own_redis, "wl", ACL_RULE)
    with trio.fail_after(10):
        async with running(RedisStore(url, near_ttl=0)) as store:
            acl_url(own_redis, "wl", ACL_RULE.replace(" +evalsha", ""))
            with pytest.raises(StoreError, match="evalsha") as info:
                await store.get("/k")
            assert not isinstance(info.value, StoreUnavailable)


def test_readme_shows_the_tested_acl_rule() -> None:
    """The README's least-privilege ACL line is exactly the rule these tests grant."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"ACL SETUSER workerless on >secret {ACL_RULE}\n" in readme


class TestAclUserStore(StoreContract):
    """The whole contract, run by users with exactly ACL_RULE (store and peer alike)."""

    @pytest.fixture
    def url(self, redis: RedisServer) -> str:
        redis_py.Redis.from_url(redis.url).flushdb()
        self.admin_url = redis.url
        return acl_url(redis, "contract", ACL_RULE)

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[Store]:
        async with running_store(RedisStore(url, max_value_bytes=64 * 1024)) as store:
            yield store

    @pytest.fixture
    async def peer(self, url: str) -> AsyncIterator[Store | None]:
        async with running_store(RedisStore(url, near_ttl=60)) as store:
            yield store

    async def plant(self, store: Store, what: Plant, key: str) -> None:
        assert isinstance(store, RedisStore)
        with redis_py.Redis.from_url(self.admin_url) as admin:
            plant_in_redis(admin, store, what, key)
