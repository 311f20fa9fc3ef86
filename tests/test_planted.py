"""A shared store is input: whatever is planted under the prefix, the next answer is a correct 200.

Each test writes into a real redis-server what someone with write access could, then asks a
real hypercorn serving the contract app on that Redis.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator

import httpx
import pytest
import redis as redis_py
import trio
from apps.contract_app import make_app
from servers import RedisServer, serve_in_process
from test_contract import LIMITS, Served

from workerless._redis_keys import KeyLayout

pytestmark = pytest.mark.redis

PREFIX = "workerless:"
KEYS = KeyLayout(PREFIX)  # where the store keeps each key, to plant data there


@pytest.fixture
def planter(redis: RedisServer) -> redis_py.Redis:
    client = redis_py.Redis.from_url(redis.url)
    client.flushdb()
    return client


@pytest.fixture
async def served(redis: RedisServer, planter: redis_py.Redis) -> AsyncIterator[Served]:
    app, workerless, probe = make_app(store=redis.url, deadline=5.0, lease=2.0, near_ttl=0)
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, limits=LIMITS, timeout=30) as client,
    ):
        yield Served(url, client, workerless, probe)


def envelope(payload: bytes, stale: float = 0.0, stale_if_error: float = 0.0) -> bytes:
    """A stored entry's freshness record around ``payload``, as a planter could write it."""
    return b"WLF1" + struct.pack("!ddd8s", stale, stale_if_error, 0.1, b"planted!") + payload


def response(status: object, headers: object, body: bytes = b"planted") -> bytes:
    """Bytes shaped like an encoded response, with whatever metadata the planter chose."""
    meta = json.dumps([status, headers]).encode()
    return struct.pack("!3sI", b"WL1", len(meta)) + meta + body


def entry(status: object, headers: object, body: bytes = b"planted") -> bytes:
    """A whole stored entry: a well-formed freshness record around a planted response."""
    return envelope(response(status, headers, body))


PLANTED = {
    "status-too-big": entry(99999, []),
    "status-negative": entry(-1, []),
    "status-boolean": entry(True, []),
    "crlf-in-value": entry(200, [["X-Evil", "a\r\nSet-Cookie: stolen=1"]]),
    "bad-name": entry(200, [["Bad Name:", "x"]]),
    "private": entry(200, [["Cache-Control", "private"]]),
    "truncated": entry(200, [])[:30],
    "not-ours": b"hello",
    "no-freshness-record": response(200, []),
    "freshness-nan": envelope(response(200, []), stale=float("nan")),
    "freshness-negative": envelope(response(200, []), stale_if_error=-5.0),
    "freshness-huge": envelope(response(200, []), stale=1e300),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
async def test_planted_entries_are_recomputed_and_overwritten(
    served: Served, planter: redis_py.Redis, name: str
) -> None:
    """A planted or corrupt entry is a miss: computed, served 200, then replaced in Redis."""
    planter.set(KEYS.value(f"/quick/{name}"), PLANTED[name], px=60_000)
    with trio.fail_after(10):
        first = await served.client.get(f"/quick/{name}")
        second = await served.client.get(f"/quick/{name}")
    assert first.status_code == 200
    assert first.text == f"quick {name} #1"
    assert "set-cookie" not in first.headers and "x-evil" not in first.headers
    assert second.headers["cache-status"].startswith("workerless; hit")
    assert second.text == first.text


async def test_planted_set_cookie_on_a_valid_entry_is_never_sent(
    served: Served, planter: redis_py.Redis
) -> None:
    """Even mixed into an otherwise valid entry, a planted Set-Cookie never reaches a client."""
    planter.set(
        KEYS.value("/quick/cookie"), entry(200, [["Set-Cookie", "a=b"], ["X-Ok", "1"]]), px=60_000
    )
    with trio.fail_after(10):
        response = await served.client.get("/quick/cookie")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers


async def test_corrupt_epoch_is_repaired(served: Served, planter: redis_py.Redis) -> None:
    """``SET <prefix>epoch x``: misses still compute, store and then hit."""
    planter.set(KEYS.epoch("/quick/epoch"), "x")
    with trio.fail_after(10):
        first = await served.client.get("/quick/epoch")
        second = await served.client.get("/quick/epoch")
    assert first.status_code == 200
    assert second.headers["cache-status"].startswith("workerless; hit")


async def test_value_key_of_the_wrong_type_is_that_keys_miss_only(
    served: Served, planter: redis_py.Redis
) -> None:
    """``RPUSH <prefix>v:<key> a``: that key computes and is overwritten; others stay cached."""
    with trio.fail_after(10):
        await served.client.get("/quick/other")
        planter.rpush(KEYS.value("/quick/list"), "a")
        listed = await served.client.get("/quick/list")
        other = await served.client.get("/quick/other")
        again = await served.client.get("/quick/list")
    assert listed.status_code == 200
    assert "store-unavailable" not in listed.headers["cache-status"]
    assert other.headers["cache-status"].startswith("workerless; hit")
    assert again.headers["cache-status"].startswith("workerless; hit")


async def test_foreign_lease_is_broken(served: Served, planter: redis_py.Redis) -> None:
    """``SET <prefix>lease:<key> x PX 3600000``: the key is still computed at once."""
    planter.set(KEYS.lease("/quick/leased"), "x", px=3_600_000)
    with trio.fail_after(10):
        response = await served.client.get("/quick/leased")
    assert response.status_code == 200
    assert response.headers["cache-status"] == "workerless; fwd=miss; stored"


async def test_forged_failure_notice_does_not_fail_waiters(
    served: Served, planter: redis_py.Redis
) -> None:
    """A PUBLISH of a failure notice not from the lease holder is ignored: the waiter takes
    over when the (planted, well-formed) holder's lease ends and answers 200."""
    holder = "b" * 32
    planter.set(KEYS.lease("/quick/forged"), holder, px=1500)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            answers: list[httpx.Response] = []

            async def wait() -> None:
                answers.append(await served.client.get("/quick/forged"))

            nursery.start_soon(wait)
            await trio.sleep(0.3)
            notice = {
                "key": "/quick/forged",
                "outcome": "failed",
                "reason": "forged",
                "cached": False,
                "token": "c" * 32,
                "origin": "elsewhere",
            }
            planter.publish(f"{PREFIX}notices", json.dumps(notice))
    assert answers[0].status_code == 200
    assert answers[0].text == "quick forged #1"
