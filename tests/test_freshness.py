"""Freshness over HTTP: stale-while-revalidate, stale-if-error, ETag and 304, Cache-Control."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from apps.contract_app import make_app
from servers import serve_in_process
from test_contract import LIMITS, Served, concurrent_gets


@pytest.fixture
async def served(store_url: str) -> AsyncIterator[Served]:
    app, workerless, probe = make_app(
        store=store_url, ttl=0.5, stale=30, stale_if_error=0, early_refresh=0, deadline=5.0
    )
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, limits=LIMITS, timeout=30) as client,
    ):
        yield Served(url, client, workerless, probe)


async def test_after_the_ttl_requests_get_the_old_value_at_once_and_one_refresh_runs(
    served: Served,
) -> None:
    """Inside the stale window, 30 concurrent requests get the old body at once (the refresh
    takes 1 s), one recomputation runs, and the next request is a hit on the new body."""
    with trio.fail_after(20):
        first = await served.client.get("/quick/swr?t=1")
        await trio.sleep(0.7)
        started = trio.current_time()
        stale = await concurrent_gets(served.client, "/quick/swr?t=1", 30)
        answered_in = trio.current_time() - started
        await served.workerless.cacher.wait_idle()
        fresh = await served.client.get("/quick/swr?t=1")
    assert {r.text for r in stale} == {first.text} == {"quick swr #1"}
    assert all("fwd=stale" in r.headers["cache-status"] for r in stale)
    assert all(r.headers["cache-status"].startswith("workerless; hit;") for r in stale)
    assert answered_in < 1  # none of them waited for the 1 s refresh
    assert served.probe.computations["quick/swr"] == 2
    assert fresh.text == "quick swr #2"
    assert fresh.headers["cache-status"].startswith("workerless; hit; ttl=")


async def test_stale_if_error_serves_the_old_value_and_tries_again(store_url: str) -> None:
    """Past the ttl, inside stale_if_error: a failing computation answers the old value with
    detail=stale-if-error, the next request tries the computation again."""
    app, _workerless, probe = make_app(
        store=store_url, ttl=0.3, stale_if_error=60, early_refresh=0, deadline=5.0
    )
    probe.failing = False
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        with trio.fail_after(20):
            good = await client.get("/boom")
            await trio.sleep(0.5)
            probe.failing = True
            first = await client.get("/boom")
            second = await client.get("/boom")
            probe.failing = False
            fixed = await client.get("/boom")
    assert good.text == first.text == second.text == "boom fixed"
    assert first.status_code == second.status_code == 200
    assert first.headers["cache-status"].endswith("detail=stale-if-error")
    assert probe.computations["boom"] == 4
    assert fixed.headers["cache-status"] == "workerless; fwd=miss; stored"


async def test_outside_the_windows_a_failure_is_a_502(store_url: str) -> None:
    """With no stale window, an expired fragment whose computation fails answers 502."""
    app, _workerless, probe = make_app(store=store_url, ttl=0.3, early_refresh=0, deadline=5.0)
    probe.failing = False
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        with trio.fail_after(20):
            assert (await client.get("/boom")).status_code == 200
            await trio.sleep(0.5)
            probe.failing = True
            assert (await client.get("/boom")).status_code == 502


async def test_etag_and_304(served: Served) -> None:
    """Every cached fragment has a strong ETag; If-None-Match with it answers 304, no body,
    on a hit and on a computed answer alike; another tag gets the 200."""
    with trio.fail_after(10):
        computed = await served.client.get("/quick/etag")
        etag = computed.headers["etag"]
        hit = await served.client.get("/quick/etag", headers={"If-None-Match": etag})
        other = await served.client.get("/quick/etag", headers={"If-None-Match": '"nope"'})
        weak = await served.client.get("/quick/etag", headers={"If-None-Match": f"W/{etag}"})
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert (hit.status_code, hit.content) == (304, b"")
    assert hit.headers["etag"] == etag
    assert hit.headers["cache-control"] == "private, no-cache"
    assert hit.headers["cache-status"].startswith("workerless; hit")
    assert other.status_code == 200 and other.text == computed.text
    assert weak.status_code == 304


async def test_cache_control_is_explicit(store_url: str) -> None:
    """Fragments say private, no-cache by default; browser_ttl gives private, max-age; a view's
    own Cache-Control is kept; 202 and errors say no-store."""
    app, _workerless, probe = make_app(store=store_url, browser_ttl=30)
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        with trio.fail_after(10):
            kept = await client.get("/quick/bt")
            probe.gate("p").set()
            public = await client.get("/cache-control/p?cc=public, max-age=5")
            error = await client.get("/boom")
    assert kept.headers["cache-control"] == "private, max-age=30"
    assert public.headers["cache-control"] == "public, max-age=5"
    assert error.headers["cache-control"] == "no-store"
