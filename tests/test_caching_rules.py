"""What a fragment route (and WorkerlessMiddleware) may share: private answers, Vary,
credentials, and the computation cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from apps import contract_app, contract_asgi
from servers import serve_in_process
from test_contract import LIMITS, Served, concurrent_gets

from workerless import WorkerlessMiddleware


@pytest.fixture(params=["fragment", "middleware"])
async def served(request: pytest.FixtureRequest, store_url: str) -> AsyncIterator[Served]:
    """The contract app served by fragment routes, then by the middleware, on each store."""
    make_app = contract_app.make_app if request.param == "fragment" else contract_asgi.make_app
    app, workerless, probe = make_app(
        store=store_url, hard_limit=10.0, deadline=5.0, lease=3.0, max_computations=3
    )
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, limits=LIMITS, timeout=30) as client,
    ):
        yield Served(url, client, workerless, probe)


async def joined_then_opened(served: Served, name: str, cc: str, n: int) -> list[httpx.Response]:
    """``n`` concurrent GETs of one gated key; the gate opens once all have arrived."""
    responses: list[httpx.Response] = []

    async def send() -> None:
        responses.extend(await concurrent_gets(served.client, f"/cache-control/{name}?cc={cc}", n))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while served.probe.computations[f"cache-control/{name}"] < 1:  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(0.3)  # the others join the running computation meanwhile
        served.probe.gate(name).set()
    return responses


@pytest.mark.parametrize("cc", ["private", "no-store", "private, max-age=60"])
async def test_private_answer_is_not_shared_with_joiners_nor_stored(
    served: Served, cc: str
) -> None:
    """A view answering private or no-store: joiners compute their own, nothing is stored."""
    name = cc.split(",")[0]
    with trio.fail_after(15):
        responses = await joined_then_opened(served, name, cc, 3)
        again = await served.client.get(f"/cache-control/{name}?cc={cc}")
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sorted(r.text for r in responses) == [f"{name} #1", f"{name} #2", f"{name} #3"]
    assert not any("stored" in r.headers["cache-status"] for r in [*responses, again])
    assert again.text == f"{name} #4"


async def test_public_answer_is_shared_with_joiners_and_stored(served: Served) -> None:
    """The same gated route answering public: one computation for all, then a hit."""
    with trio.fail_after(15):
        responses = await joined_then_opened(served, "public", "public", 3)
        again = await served.client.get("/cache-control/public?cc=public")
    assert [r.text for r in responses] == ["public #1"] * 3
    assert again.headers["cache-status"].startswith("workerless; hit")


async def test_vary_header_becomes_part_of_the_key(served: Served) -> None:
    """Responses with Vary: Accept-Language are cached per language, never served across."""
    seen: list[tuple[str, str, str]] = []
    with trio.fail_after(15):
        for language in ["fr", "en", "fr", "en", "fr", "de", "en"]:
            response = await served.client.get("/vary/a", headers={"Accept-Language": language})
            seen.append((language, response.text, response.headers["cache-status"]))
    assert all(text == f"a in {language}" for language, text, _ in seen)
    assert any(status.startswith("workerless; hit") for _, _, status in seen)
    assert served.probe.computations["vary/a"] < len(seen)


async def test_vary_star_is_never_cached(served: Served) -> None:
    """A response with Vary: * is computed for every request."""
    with trio.fail_after(15):
        for _ in range(3):
            response = await served.client.get("/vary/star?on=*")
            assert "stored" not in response.headers["cache-status"]
    assert served.probe.computations["vary/star"] == 3


async def test_requests_with_credentials_never_share_answers(served: Served) -> None:
    """A request with Authorization neither gets another's cached fragment nor gives its own."""
    skip_for_middleware(served)
    alice = {"Authorization": "Bearer alice"}
    with trio.fail_after(15):
        anonymous = await served.client.get("/quick/auth")
        as_alice = await served.client.get("/quick/auth", headers=alice)
        as_bob = await served.client.get("/quick/auth", headers={"Authorization": "Bearer bob"})
        alice_again = await served.client.get("/quick/auth", headers=alice)
        anonymous_again = await served.client.get("/quick/auth")
    assert [anonymous.text, as_alice.text, as_bob.text] == [
        "quick auth #1",
        "quick auth #2",
        "quick auth #3",
    ]
    assert alice_again.text == "quick auth #2"
    assert anonymous_again.text == "quick auth #1"


async def test_misses_past_the_cap_get_503_while_hits_and_joins_go_on(served: Served) -> None:
    """With max_computations running, a new miss gets 503 + Retry-After; hits and joins don't."""
    with trio.fail_after(15):
        assert (await served.client.get("/quick/cached")).status_code == 200
        async with trio.open_nursery() as nursery:
            for name in ("c1", "c2", "c3"):
                nursery.start_soon(served.client.get, f"/cache-control/{name}?cc=public")
            while sum(served.probe.computations[f"cache-control/c{i}"] for i in (1, 2, 3)) < 3:  # noqa: ASYNC110
                await trio.sleep(0.01)
            refused = await served.client.get("/quick/refused")
            hit = await served.client.get("/quick/cached")
            joined: list[httpx.Response] = []

            async def join() -> None:
                joined.append(await served.client.get("/cache-control/c1?cc=public"))

            nursery.start_soon(join)
            await trio.sleep(0.2)
            for name in ("c1", "c2", "c3"):
                served.probe.gate(name).set()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["cache-status"] == "workerless; fwd=miss; detail=overloaded"
    assert served.probe.computations["quick/refused"] == 0
    assert hit.headers["cache-status"].startswith("workerless; hit")
    assert served.workerless.cacher.statistics().rejected == 1
    assert [r.text for r in joined] == ["c1 #1"]
    with trio.fail_after(10):
        after = await served.client.get("/quick/refused")
    assert after.status_code == 200


async def test_invalidate_drops_every_variant(served: Served) -> None:
    """invalidate(url) drops the per-language and per-credentials variants too."""
    skip_for_middleware(served)
    alice = {"Authorization": "Bearer alice"}
    with trio.fail_after(15):
        for language in ["fr", "fr", "fr"]:  # learn Vary, then store, then hit
            await served.client.get("/vary/inv", headers={"Accept-Language": language})
        await served.client.get("/quick/inv", headers=alice)
        before = dict(served.probe.computations)
        assert await served.workerless.invalidate("/vary/inv")
        assert await served.workerless.invalidate("/quick/inv")
        french = await served.client.get("/vary/inv", headers={"Accept-Language": "fr"})
        as_alice = await served.client.get("/quick/inv", headers=alice)
    assert "fwd=miss" in french.headers["cache-status"]
    assert served.probe.computations["vary/inv"] == before["vary/inv"] + 1
    assert as_alice.text == "quick inv #2"


def skip_for_middleware(served: Served) -> None:
    if isinstance(served.workerless, WorkerlessMiddleware):
        pytest.skip("the middleware passes credentials through uncached: see test_middleware.py")
