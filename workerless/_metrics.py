"""The Cacher's figures for operators: Prometheus metrics and a JSON statistics endpoint.

Both read `Cacher.statistics()` when asked (a scrape, a GET), so serving them costs nothing
between requests and the hot path is the same whether they are on or off.  Figures are those
of one process: the README says how to gather a fleet's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._stats import BUCKETS, CacherStatistics, Durations

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ._cacher import Cacher

__all__ = ["CacherCollector", "metrics_body", "require_prometheus", "statistics_body"]

EXTRA_HINT = (
    "metrics_path needs prometheus_client, which is not installed: "
    'pip install "workerless[metrics]"'
)

# (metric name without _total, RouteStatistics field, help text)
_COUNTERS = (
    ("workerless_hits", "hits", "Requests answered from the store."),
    ("workerless_misses", "misses", "Requests that found no fresh value (joins included)."),
    ("workerless_joins", "collapsed", "Misses that joined a computation already running here."),
    ("workerless_computations", "computations", "Computations started in this process."),
    ("workerless_failures", "failures", "Computations that raised or passed the hard limit."),
    ("workerless_timeouts", "timeouts", "Computations cancelled at the hard limit."),
    ("workerless_pending", "pending", "Requests answered 202: the deadline passed first."),
    ("workerless_stale", "stale", "Values served past their ttl (stale or stale-if-error)."),
    ("workerless_rejected", "rejected", "Misses answered 503: max_computations were running."),
)
_GAUGES = (
    ("workerless_running_computations", "running", "Computations running in this process."),
    ("workerless_held_requests", "held", "Requests held open, waiting on a computation."),
)
_HISTOGRAMS = (
    ("workerless_computation_seconds", "computation_time", "Time of each computation."),
    ("workerless_wait_seconds", "wait_time", "Time each missing request was held."),
)
_BOUNDS = (*(f"{bound:g}" for bound in BUCKETS), "+Inf")


def require_prometheus() -> None:
    """Raise ImportError naming the ``metrics`` extra when prometheus_client is missing."""
    try:
        import prometheus_client  # noqa: F401 - only whether it is there
    except ImportError:
        raise ImportError(EXTRA_HINT, name="prometheus_client") from None


class CacherCollector:
    """A prometheus_client collector of one Cacher's figures, labelled by route rule."""

    def __init__(self, cacher: Cacher[Any]) -> None:
        self.cacher = cacher

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self.cacher.statistics()
        routes = sorted(stats.routes.items())
        for name, attribute, text in _COUNTERS:
            counter = CounterMetricFamily(name, text, labels=["route"])
            for route, figures in routes:
                counter.add_metric([route], getattr(figures, attribute))
            yield counter
        for name, attribute, text in _GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["route"])
            for route, figures in routes:
                gauge.add_metric([route], getattr(figures, attribute))
            yield gauge
        yield GaugeMetricFamily(
            "workerless_store_available",
            "1 while the store answers, 0 while serving without it.",
            value=int(stats.store_available),
        )
        for name, attribute, text in _HISTOGRAMS:
            histogram = HistogramMetricFamily(name, text, labels=["route"])
            for route, figures in routes:
                durations: Durations = getattr(figures, attribute)
                histogram.add_metric(
                    [route],
                    list(zip(_BOUNDS, (float(n) for n in durations.cumulative), strict=True)),
                    durations.total,
                )
            yield histogram


def metrics_body(collector: CacherCollector) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``collector`` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    # A registry of our own per call: nothing global, and two apps in one process never clash.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def statistics_body(stats: CacherStatistics) -> bytes:
    """``stats`` as JSON: the sums, ``routes`` by rule, and this process's ``pid``."""
    document: dict[str, Any] = {"pid": os.getpid()}
    for name in CacherStatistics.__dataclass_fields__:
        if name != "routes":
            document[name] = getattr(stats, name)
    document["routes"] = {
        route: {
            name: _durations(value) if isinstance(value, Durations) else value
            for name in type(figures).__dataclass_fields__
            for value in (getattr(figures, name),)
        }
        for route, figures in stats.routes.items()
    }
    return json.dumps(document, sort_keys=True).encode()


def _durations(durations: Durations) -> dict[str, Any]:
    """A histogram as JSON: ``buckets`` maps each upper bound (``"+Inf"`` last) to a count."""
    total = durations.total if math.isfinite(durations.total) else None
    return {
        "count": durations.count,
        "sum": total,
        "buckets": dict(zip(_BOUNDS, durations.cumulative, strict=True)),
    }
