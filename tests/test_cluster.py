"""RedisStore on a real 3-master Redis Cluster started by these tests: the whole store
contract, and two servers sharing the cluster."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis as redis_py
import trio
from redis.cluster import ClusterNode, RedisCluster
from servers import Hypercorn, RedisServer, redis_cluster
from servers import RedisCluster as Cluster
from test_acl import ACL_RULE
from test_fleet import client, computation, computations, start_servers, unique
from test_store_contract import plant_in_redis

from workerless import RedisStore, Store, StoreError, StoreUnavailable
from workerless.testing import Plant, StoreContract, running_store

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters joined by redis-cli --cluster create, for this module."""
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def raw(cluster: Cluster) -> Iterator[RedisCluster]:
    """A plain redis-py cluster client, to look behind the store's back."""
    nodes = [ClusterNode("127.0.0.1", port) for port in cluster.ports]  # type: ignore[no-untyped-call]
    with RedisCluster(startup_nodes=nodes, socket_timeout=5) as client:
        yield client


class TestClusterStore(StoreContract):
    @pytest.fixture
    def url(self, cluster: Cluster, raw: RedisCluster) -> str:
        raw.flushdb(target_nodes=RedisCluster.PRIMARIES)
        return cluster.url

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[Store]:
        async with running_store(RedisStore(url, max_value_bytes=64 * 1024)) as store:
            yield store

    @pytest.fixture
    async def peer(self, url: str) -> AsyncIterator[Store | None]:
        async with running_store(RedisStore(url, near_ttl=60)) as store:
            yield store

    @pytest.fixture(autouse=True)
    def _raw(self, raw: RedisCluster) -> None:
        self.raw = raw

    async def plant(self, store: Store, what: Plant, key: str) -> None:
        assert isinstance(store, RedisStore)
        plant_in_redis(self.raw, store, what, key)


async def test_a_plain_url_to_a_cluster_node_is_refused_naming_the_cluster_url(
    cluster: Cluster,
) -> None:
    """redis:// to one master of a working cluster fails open() with StoreError saying to use
    redis+cluster:// (some of its probe keys live on other masters)."""
    with trio.fail_after(10), pytest.raises(StoreError, match="use redis\\+cluster://") as info:
        await RedisStore(f"redis://127.0.0.1:{cluster.ports[0]}/0").open()
    assert not isinstance(info.value, StoreUnavailable)


async def test_scripts_flushed_from_every_master_are_loaded_again(
    cluster: Cluster, raw: RedisCluster
) -> None:
    """After SCRIPT FLUSH on every master, pipelined renewals and prefix deletion (EVALSHA
    per node) load their script again and succeed."""
    with trio.fail_after(10):
        async with running_store(RedisStore(cluster.url)) as store:
            leases = {f"/r{n}": secrets.token_hex(16) for n in range(20)}
            for key, held in leases.items():
                assert (await store.acquire_lease(key, held, 30)).acquired
            await store.set("/r0", b"v", 30)
            raw.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
            assert await store.renew_leases(leases, 30) == frozenset()
            raw.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
            assert await store.delete_prefix("/r") == 1


# -- two servers on the cluster -----------------------------------------------------------


@pytest.fixture(scope="module")
def servers(
    cluster: Cluster, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Hypercorn]]:
    """Two hypercorn servers on the cluster; computations take 1 s and are counted in the
    session Redis; leases last 30 s, so only a pushed notice can wake the other server."""
    with ExitStack() as stack:
        yield start_servers(
            stack,
            tmp_path_factory.mktemp("cluster-servers"),
            [1, 1],
            store_url=cluster.url,
            counter_url=redis.url,
            WORKERLESS_LEASE="30",
            WORKERLESS_NEAR_TTL="60",
        )


def nodes_holding(raw: RedisCluster, pattern: str) -> int:
    """How many masters hold a key matching ``pattern``."""
    nodes = [raw.get_redis_connection(node) for node in raw.get_primaries()]
    return sum(any(node.scan_iter(match=pattern, count=1000)) for node in nodes)


async def get_all(
    http: httpx.AsyncClient, server: Hypercorn, names: list[str]
) -> list[httpx.Response]:
    """GET every fragment of ``names`` from ``server`` at once."""
    answers: dict[str, httpx.Response] = {}

    async def get(name: str) -> None:
        answers[name] = await http.get(f"{server.url}/fragment/{name}")

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(get, name)
    return [answers[name] for name in names]


async def test_one_computation_per_key_across_servers_woken_by_notices(
    servers: list[Hypercorn], redis: RedisServer
) -> None:
    """60 concurrent requests for one cold key over two servers on the cluster: one
    computation, the same 200 body for all, every waiter woken long before the 30 s lease."""
    name = unique("cluster-cold")
    counter = redis_py.Redis.from_url(redis.url)
    responses: list[httpx.Response] = []

    async def get(http: httpx.AsyncClient, server: int) -> None:
        responses.append(await http.get(f"{servers[server].url}/fragment/{name}"))

    with trio.fail_after(60):
        started = trio.current_time()
        async with client() as http, trio.open_nursery() as nursery:
            for n in range(60):
                nursery.start_soon(get, http, n % 2)
        elapsed = trio.current_time() - started
    assert [r.status_code for r in responses] == [200] * 60
    assert len({r.content for r in responses}) == 1
    assert computations(counter, name) == 1
    assert elapsed < 15  # a waiter left to its lease would take 30 s


async def test_invalidation_by_url_and_prefix_reaches_every_node_and_server(
    servers: list[Hypercorn], redis: RedisServer, raw: RedisCluster
) -> None:
    """Fragments spread over several masters, near-cached on server B: invalidate(url) and
    invalidate_prefix on server A make B compute each again at once."""
    group = unique("cluster-inv")
    names = [f"{group}-{n}" for n in range(8)]
    counter = redis_py.Redis.from_url(redis.url)
    with trio.fail_after(60):
        async with client() as http:
            await get_all(http, servers[1], names)
            for answer in await get_all(http, servers[1], names):
                assert "hit" in answer.headers["Cache-Status"]
            assert nodes_holding(raw, f"workerless:*v:*{group}*") >= 2

            path = f"/fragment/{names[0]}"
            dropped = await http.post(f"{servers[0].url}/admin/invalidate", params={"url": path})
            assert dropped.json() == {"removed": True}
            again = await http.get(servers[1].url + path)
            assert "fwd=miss" in again.headers["Cache-Status"] and computation(again) == 2

            prefix = f"/fragment/{group}-"
            dropped = await http.post(
                f"{servers[0].url}/admin/invalidate", params={"prefix": prefix}
            )
            assert dropped.json() == {"removed": len(names)}
            for answer in await get_all(http, servers[1], names):
                assert "fwd=miss" in answer.headers["Cache-Status"]
    assert [computations(counter, name) for name in names] == [3] + [2] * (len(names) - 1)


# -- a least-privilege user on every node -------------------------------------------------

# What a cluster client needs beyond ACL_RULE: the slot map and the command table.
CLUSTER_ACL_EXTRA = "+cluster|slots +command"


def cluster_user(cluster: Cluster, user: str, rule: str) -> str:
    """Create ``user`` with ``rule`` on every node; the cluster URL with its credentials."""
    for port in cluster.ports:
        with redis_py.Redis(port=port) as node:
            node.execute_command("ACL", "SETUSER", user, "reset", "on", ">pw", *rule.split())
    return cluster.url.replace("://", f"://{user}:pw@")


async def test_a_least_privileged_user_runs_the_store_on_the_cluster(
    cluster: Cluster, raw: RedisCluster
) -> None:
    """ACL_RULE plus CLUSTER_ACL_EXTRA is enough on a cluster; without +command or
    +cluster|slots start-up fails with a StoreError naming what is missing."""
    raw.flushdb(target_nodes=RedisCluster.PRIMARIES)
    url = cluster_user(cluster, "wl", f"{ACL_RULE} {CLUSTER_ACL_EXTRA}")
    with trio.fail_after(20):
        async with running_store(RedisStore(url)) as store:
            mine = secrets.token_hex(16)
            assert (await store.acquire_lease("/k", mine, 30)).acquired
            assert await store.renew_leases({"/k": mine}, 30) == frozenset()
            assert await store.set("/k", b"v", 30, epoch=await store.epoch("/k"))
            assert await store.delete_prefix("/") == 1
        for missing in ("+command", "+cluster|slots"):
            narrow = cluster_user(
                cluster, "narrow", f"{ACL_RULE} {CLUSTER_ACL_EXTRA}".replace(f" {missing}", "")
            )
            with pytest.raises(StoreError) as info:
                await RedisStore(narrow).open()
            assert not isinstance(info.value, StoreUnavailable)
            assert missing in str(info.value) and "'narrow'" in str(info.value)


def test_readme_names_the_cluster_acl_extra() -> None:
    """The README's cluster ACL addition is exactly the one tested here."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"add `{CLUSTER_ACL_EXTRA}`" in readme
