"""What SIGTERM to a real hypercorn does to held requests and running computations."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from servers import hypercorn


@pytest.mark.parametrize("app", ["apps.contract_app:app", "apps.contract_asgi:app"])
async def test_sigterm_answers_held_request_202_and_lets_computation_finish(
    tmp_path: Path, app: str
) -> None:
    """On SIGTERM a held request gets 202 at once (not cut); the computation finishes in grace.

    hypercorn's graceful timeout (1 s) is shorter than the computation's remaining time, so
    without workerless answering first the held request would be cut with no response.
    Fragment routes and the middleware (on a Starlette app) alike.
    """
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        "WORKERLESS_DEADLINE": "30",
        "WORKERLESS_GRACE": "4",
        "CONTRACT_MARKER_DIR": str(markers),
    }
    with hypercorn(
        app, tmp_path, env=env, args=("--graceful-timeout", "1")
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            with trio.fail_after(20):
                responses: list[httpx.Response] = []

                async def held() -> None:
                    responses.append(await client.get("/sleep/term?t=2.0"))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(held)
                    # The master listens before its worker is ready: wait for the computation.
                    while not (markers / "term.started").exists():  # noqa: ASYNC110 - a file
                        await trio.sleep(0.05)
                    server.terminate()
                (response,) = responses
                assert response.status_code == 202
                assert response.headers["cache-status"].endswith("detail=shutting-down")
                assert response.headers["retry-after"].isdigit()
                while server.proc.poll() is None:  # noqa: ASYNC110 - a subprocess, no event
                    await trio.sleep(0.1)
    assert server.proc.returncode == 0
    assert (markers / "term").read_text() == "finished"
    log = server.log.read_text()
    assert "answering waiting requests 202" in log
