"""Metrics and the JSON statistics endpoint, scraped from a real hypercorn after known requests."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from quart_trio import QuartTrio
from servers import serve_in_process

from workerless import ConfigurationError, Workerless

CITY = "/city/<name>"
ROUTES = (CITY, "/slow", "/fail", "/runaway", "/stale")


@dataclass
class Served:
    client: httpx.AsyncClient
    workerless: Workerless
    gates: dict[str, trio.Event]


def make_app(**settings: Any) -> tuple[QuartTrio, Workerless, dict[str, trio.Event]]:
    """Five routes, one per kind of answer: held then hit, 202, failure, timeout, stale."""
    app = QuartTrio(__name__)
    workerless = Workerless(app, environ={}, deadline=5, early_refresh=0, **settings)
    gates = {"city": trio.Event(), "slow": trio.Event()}

    @workerless.fragment(CITY)
    async def city(name: str) -> str:
        await gates["city"].wait()
        return f"weather in {name}"

    @workerless.fragment("/slow", deadline=0.2)
    async def slow() -> str:
        await gates["slow"].wait()
        return "slow"

    @workerless.fragment("/fail")
    async def fail() -> str:
        raise RuntimeError("upstream exploded")

    @workerless.fragment("/runaway", hard_limit=0.3)
    async def runaway() -> str:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    @workerless.fragment("/stale", ttl=0.3, stale=30)
    async def stale() -> str:
        return "stale"

    return app, workerless, gates


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    app, workerless, gates = make_app(metrics_path="/metrics", stats_path="/workerless/stats")
    async with (
        serve_in_process(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Served(client, workerless, gates)
        for gate in gates.values():
            gate.set()


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """The /metrics samples as {(sample name, route label): value}, parsed by prometheus_client."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert response.headers["cache-control"] == "no-store"
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if "le" in sample.labels:
                continue  # the buckets are checked apart
            samples[sample.name, sample.labels.get("route", "")] = sample.value
    return samples


async def wait_until_held(workerless: Workerless, held: int) -> None:
    while workerless.cacher.statistics().held < held:  # noqa: ASYNC110 - a figure, no event
        await trio.sleep(0.01)


async def run_the_sequence(served: Served) -> None:
    """Two requests for one city (one computes, one joins), then a hit; a 202; a failure; a
    timeout; a stale serve; then wait for every computation (the stale refresh) to end."""
    client, workerless = served.client, served.workerless
    async with trio.open_nursery() as nursery:
        answers: list[httpx.Response] = []

        async def get(path: str) -> None:
            answers.append(await client.get(path))

        nursery.start_soon(get, "/city/paris")
        await wait_until_held(workerless, 1)
        nursery.start_soon(get, "/city/paris")
        await wait_until_held(workerless, 2)
        during = await scrape(client)
        served.gates["city"].set()
    assert [a.status_code for a in answers] == [200, 200]
    assert during["workerless_held_requests", CITY] == 2
    assert during["workerless_running_computations", CITY] == 1
    assert (await client.get("/city/paris")).headers["cache-status"].startswith("workerless; hit")
    assert (await client.get("/slow")).status_code == 202
    assert (await client.get("/fail")).status_code == 502
    assert (await client.get("/runaway")).status_code == 504
    assert (await client.get("/stale")).status_code == 200
    await trio.sleep(0.5)  # past the 0.3 s ttl, inside the stale window
    assert "fwd=stale" in (await client.get("/stale")).headers["cache-status"]
    served.gates["slow"].set()
    await workerless.cacher.wait_idle()


EXPECTED = {
    # route: hits, misses, joins, computations, failures, timeouts, 202s, stale
    CITY: (1, 2, 1, 1, 0, 0, 0, 0),
    "/slow": (0, 1, 0, 1, 0, 0, 1, 0),
    "/fail": (0, 1, 0, 1, 1, 0, 0, 0),
    "/runaway": (0, 1, 0, 1, 1, 1, 0, 0),
    "/stale": (0, 1, 0, 2, 0, 0, 0, 1),
}
COUNTERS = ("hits", "misses", "joins", "computations", "failures", "timeouts", "pending", "stale")


async def test_metrics_count_each_kind_of_answer_by_route_rule(served: Served) -> None:
    """After hit, miss, join, 202, failure, timeout and stale requests, /metrics (parsed by
    prometheus_client) shows exactly those counts under each route's rule, and the gauges."""
    with trio.fail_after(20):
        await run_the_sequence(served)
        samples = await scrape(served.client)
    for route, counts in EXPECTED.items():
        got = tuple(samples[f"workerless_{name}_total", route] for name in COUNTERS)
        assert got == counts, route
        assert samples["workerless_running_computations", route] == 0
        assert samples["workerless_held_requests", route] == 0
        assert samples["workerless_computation_seconds_count", route] == counts[3]
    # Held requests: both city requests, the 202, the failure and the timeout (not hits or stale).
    waits = {route: samples["workerless_wait_seconds_count", route] for route in ROUTES}
    assert waits == {CITY: 2, "/slow": 1, "/fail": 1, "/runaway": 1, "/stale": 1}
    assert samples["workerless_wait_seconds_sum", "/slow"] >= 0.2  # its deadline
    assert samples["workerless_computation_seconds_sum", "/runaway"] >= 0.3  # its hard limit
    assert samples["workerless_store_available", ""] == 1


async def test_histogram_buckets_are_cumulative_up_to_inf(served: Served) -> None:
    """The wait-time histogram's buckets grow with ``le`` and end at +Inf with the count."""
    with trio.fail_after(20):
        await run_the_sequence(served)
        text = (await served.client.get("/metrics")).text
    buckets = [
        (sample.labels["le"], sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "workerless_wait_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket") and sample.labels["route"] == "/slow"
    ]
    values = [value for _, value in buckets]
    assert values == sorted(values) and buckets[-1] == ("+Inf", 1)
    assert dict(buckets)["0.1"] == 0  # held for its 0.2 s deadline


async def test_statistics_endpoint_gives_the_same_figures_as_json(served: Served) -> None:
    """/workerless/stats answers JSON with this process's pid, the sums and per-route figures
    equal to Cacher.statistics()."""
    with trio.fail_after(20):
        await run_the_sequence(served)
        response = await served.client.get("/workerless/stats")
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    stats = served.workerless.cacher.statistics()
    assert document["pid"] == os.getpid()
    assert (document["hits"], document["misses"], document["pending"]) == (1, 6, 1)
    assert (stats.hits, stats.misses, stats.pending) == (1, 6, 1)
    assert (document["failures"], document["timeouts"], document["stale"]) == (2, 1, 1)
    assert document["store_available"] is True
    for route, counts in EXPECTED.items():
        figures = document["routes"][route]
        names = ("hits", "misses", "collapsed", "computations", "failures", "timeouts")
        assert tuple(figures[n] for n in (*names, "pending", "stale")) == counts, route
        assert figures["computation_time"]["count"] == counts[3]
        assert figures["computation_time"]["buckets"]["+Inf"] == counts[3]
    assert document["routes"]["/slow"]["wait_time"]["buckets"]["0.1"] == 0


async def test_endpoints_are_off_by_default() -> None:
    """Without metrics_path and stats_path, neither /metrics nor /workerless/stats exists."""
    app, _workerless, _gates = make_app()
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        with trio.fail_after(10):
            assert (await client.get("/metrics")).status_code == 404
            assert (await client.get("/workerless/stats")).status_code == 404


async def test_paths_from_the_environment_are_served() -> None:
    """WORKERLESS_METRICS_PATH and WORKERLESS_STATS_PATH, read at start-up, route both."""
    app = QuartTrio(__name__)
    Workerless(
        app,
        environ={"WORKERLESS_METRICS_PATH": "/m", "WORKERLESS_STATS_PATH": "/s"},
    )
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        with trio.fail_after(10):
            metrics = await client.get("/m")
            stats = await client.get("/s")
    assert "workerless_store_available 1.0" in metrics.text
    assert stats.json()["routes"] == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"metrics_path": "metrics"}, "metrics_path= must be a path starting with /"),
        ({"stats_path": ""}, "stats_path= must be a non-empty string"),
        ({"metrics_path": "/x", "stats_path": "/x"}, "metrics_path and stats_path are both"),
    ],
)
def test_bad_paths_are_refused_where_written(settings: dict[str, str], message: str) -> None:
    """A path not starting with /, an empty one, or one path for both, fails at Workerless()."""
    with pytest.raises(ConfigurationError, match=message):
        Workerless(QuartTrio(__name__), **settings)  # type: ignore[arg-type]


def test_metrics_without_prometheus_client_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With prometheus_client missing, metrics_path= raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r'pip install "workerless\[metrics\]"'):
        Workerless(QuartTrio(__name__), metrics_path="/metrics")


async def test_metrics_path_from_the_environment_without_prometheus_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WORKERLESS_METRICS_PATH with prometheus_client missing fails start-up, naming the
    variable and the extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    app = QuartTrio(__name__)
    Workerless(app, environ={"WORKERLESS_METRICS_PATH": "/metrics"})
    message = r"WORKERLESS_METRICS_PATH: .*workerless\[metrics\]"
    with trio.fail_after(10), pytest.raises(ConfigurationError, match=message):
        await app.startup()
