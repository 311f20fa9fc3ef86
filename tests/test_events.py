"""Operator events (Pending, StoreDown, StoreUp), the route they carry, and structured logs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
import trio
from servers import ROOT, RedisServer, free_port, hypercorn, serve_in_process

from workerless import (
    Cacher,
    ComputationFailed,
    Event,
    Hit,
    Miss,
    Pending,
    RedisStore,
    StillComputing,
    Stored,
    StoreDown,
    StoreUp,
)
from workerless.testing import capture_events


async def test_a_passed_deadline_emits_pending_with_the_route() -> None:
    """A caller whose deadline passes gets StillComputing, and a Pending event with its key
    and route; the figures count it as a 202."""
    release = trio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    async with Cacher() as cacher:
        with trio.fail_after(10), capture_events(cacher) as events:
            with pytest.raises(StillComputing):
                await cacher.fetch("k", slow, deadline=0.05, route="/weather/<city>")
            release.set()
            await cacher.wait_idle()
    [pending] = events.of(Pending)
    assert pending == Pending("k", collapsed=False, shutting_down=False, route="/weather/<city>")
    assert cacher.statistics().routes["/weather/<city>"].pending == 1
    assert [type(e) for e in events] == [Miss, Pending, Stored]
    assert {e.route for e in events} == {"/weather/<city>"}


async def test_every_event_of_a_fragment_route_carries_its_rule() -> None:
    """Through a real hypercorn, the miss, store and hit of /weather/paris carry the route's
    rule "/weather/<city>", not the URL."""
    from quart_trio import QuartTrio

    from workerless import Workerless

    app = QuartTrio(__name__)
    workerless = Workerless(app, environ={})

    @workerless.fragment("/weather/<city>")
    async def weather(city: str) -> str:
        return f"sunny in {city}"

    with capture_events(workerless) as events:
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
            with trio.fail_after(10):
                assert (await client.get("/weather/paris")).status_code == 200
                assert (await client.get("/weather/paris")).status_code == 200
    assert [type(e) for e in events] == [Miss, Stored, Hit]
    assert {e.route for e in events} == {"/weather/<city>"}
    assert events[0].key == "/weather/paris"


@pytest.mark.redis
async def test_store_down_and_up_events_when_redis_stops_and_starts() -> None:
    """Stopping the real redis-server emits one StoreDown (with the key and route of the call
    that found out) while calls are still answered; starting it again emits StoreUp."""
    server = RedisServer(free_port())
    server.start()
    try:
        async with Cacher(RedisStore(server.url, near_ttl=0)) as cacher:
            with trio.fail_after(30), capture_events(cacher) as events:
                assert await cacher.fetch("before", _value, route="/r") == "value"
                await cacher.wait_idle()  # its store, announce and release are done
                server.stop()
                assert await cacher.fetch("during", _value, route="/r") == "value"
                assert await cacher.fetch("during-2", _value, route="/r") == "value"
                down = cacher.statistics().store_available
                server.start()
                while not events.of(StoreUp):
                    await trio.sleep(0.2)
                    await cacher.fetch("after", _value, route="/r")
    finally:
        server.stop()
    assert down is False
    [went_down] = events.of(StoreDown)
    assert (went_down.key, went_down.route) == ("during", "/r")
    assert went_down.reason
    [came_up] = events.of(StoreUp)
    assert (came_up.key, came_up.route) == ("after", "/r")
    order = [type(e) for e in events if isinstance(e, StoreDown | StoreUp)]
    assert order == [StoreDown, StoreUp]
    assert cacher.statistics().store_available is True


async def _value() -> str:
    return "value"


async def test_log_records_carry_the_key_and_route(caplog: pytest.LogCaptureFixture) -> None:
    """A failing computation's log record has workerless_key and workerless_route fields."""

    async def broken() -> str:
        raise RuntimeError("upstream exploded")

    caplog.set_level(logging.INFO, logger="workerless")
    async with Cacher() as cacher:
        with trio.fail_after(10), pytest.raises(ComputationFailed):
            await cacher.fetch("/weather/paris", broken, route="/weather/<city>")
    [record] = [r for r in caplog.records if "upstream exploded" in r.getMessage()]
    assert record.workerless_key == "/weather/paris"  # type: ignore[attr-defined]
    assert record.workerless_route == "/weather/<city>"  # type: ignore[attr-defined]


def test_a_log_line_about_no_key_has_empty_fields(caplog: pytest.LogCaptureFixture) -> None:
    """A workerless record logged without fields still has both, empty, so formats work."""
    caplog.set_level(logging.INFO, logger="workerless")
    logging.getLogger("workerless").info("plain")
    [record] = caplog.records
    assert (record.workerless_key, record.workerless_route) == ("", "")  # type: ignore[attr-defined]


async def test_a_failing_listener_is_logged_with_the_events_key_and_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener that raises is logged with the key and route of the event it got."""

    def broken(event: Event) -> None:
        raise ValueError("bad listener")

    async with Cacher() as cacher:
        cacher.on(Miss, broken)
        with trio.fail_after(10):
            await cacher.fetch("k", _value, route="/r")
    [record] = [r for r in caplog.records if r.exc_info and "bad listener" in str(r.exc_info[1])]
    assert (record.workerless_key, record.workerless_route) == ("k", "/r")  # type: ignore[attr-defined]


def readme_python_block(heading: str, marker: str) -> str:
    """The ```python block of the README's ``### heading`` that contains ``marker``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"\n### {heading}\n", 1)[1].split("\n## ", 1)[0]
    [block] = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if marker in b]
    return block


def test_readme_logging_snippet_shows_info_lines_under_hypercorn(tmp_path: Path) -> None:
    """The README's logging lines, in an app served by hypercorn, print workerless's INFO
    line at start-up and a failure's line with its route rule and key."""
    snippet = readme_python_block("Logs", "workerless_route")
    (tmp_path / "logged_app.py").write_text(
        snippet
        + "\nfrom quart_trio import QuartTrio\nfrom workerless import Workerless\n"
        + "app = QuartTrio(__name__)\nworkerless = Workerless(app)\n\n"
        + "@workerless.fragment('/boom/<name>')\nasync def boom(name: str) -> str:\n"
        + "    raise RuntimeError('upstream exploded')\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    with hypercorn("logged_app:app", tmp_path, env=env) as server:
        response = httpx.get(f"{server.url}/boom/paris", timeout=10)
        server.terminate()
        server.proc.wait(15)
    log = server.log.read_text()
    assert response.status_code == 502
    assert "INFO workerless: workerless serving with" in log
    assert "route=/boom/<name> key=/boom/paris" in log
