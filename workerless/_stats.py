"""A Cacher's figures: counted per route as they happen, read as frozen snapshots.

The Cacher keeps one `Tally` per route rule ("" for direct use) and bumps plain attributes on
it: the cost of a hit is one dict lookup and one addition, whether or not anyone reads them.
`statistics()`, the JSON endpoint and the Prometheus collector all read the same tallies.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["BUCKETS", "CacherStatistics", "Durations", "RouteStatistics", "Tally", "Timings"]

# Upper bounds (seconds) of the duration buckets: from a local computation to the hard limit.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Timings:
    """Durations counted into `BUCKETS` (a last, unbounded bucket takes the rest)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> Durations:
        cumulative = []
        running = 0
        for count in self.counts:
            running += count
            cumulative.append(running)
        return Durations(tuple(cumulative), self.total)


@dataclass(frozen=True, slots=True)
class Durations:
    """A histogram: ``cumulative[i]`` durations were at most ``BUCKETS[i]`` seconds (the last
    entry counts all of them, Prometheus's ``+Inf``); ``total`` is their sum in seconds."""

    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


class Tally:
    """One route's live counters; written by the Cacher only, from the trio thread."""

    __slots__ = (
        "collapsed",
        "computation_time",
        "computations",
        "failures",
        "held",
        "hits",
        "misses",
        "pending",
        "rejected",
        "running",
        "stale",
        "timeouts",
        "wait_time",
    )

    def __init__(self) -> None:
        self.hits = self.misses = self.collapsed = self.computations = 0
        self.failures = self.timeouts = self.pending = self.stale = self.rejected = 0
        self.running = self.held = 0
        self.computation_time = Timings()
        self.wait_time = Timings()

    def snapshot(self) -> RouteStatistics:
        return RouteStatistics(
            hits=self.hits,
            misses=self.misses,
            collapsed=self.collapsed,
            computations=self.computations,
            failures=self.failures,
            timeouts=self.timeouts,
            pending=self.pending,
            stale=self.stale,
            rejected=self.rejected,
            running=self.running,
            held=self.held,
            computation_time=self.computation_time.snapshot(),
            wait_time=self.wait_time.snapshot(),
        )


@dataclass(frozen=True, slots=True)
class RouteStatistics:
    """One route's figures since the Cacher was created.

    ``misses`` counts every caller that did not get a stored value, of which ``collapsed``
    joined a computation already running here; ``computations`` ran in this process, of which
    ``failures`` raised or passed the hard limit (``timeouts``).  ``pending`` callers passed
    their deadline (a fragment answered 202); ``stale`` values were served past their ttl;
    ``rejected`` misses met ``max_computations``.  ``running`` computations and ``held``
    callers are the ones at this moment.  ``computation_time`` is the time of each finished
    computation; ``wait_time`` the time each missing caller was held (hits are not held).
    """

    hits: int
    misses: int
    collapsed: int
    computations: int
    failures: int
    timeouts: int
    pending: int
    stale: int
    rejected: int
    running: int
    held: int
    computation_time: Durations
    wait_time: Durations


@dataclass(frozen=True, slots=True)
class CacherStatistics:
    """A snapshot of a Cacher's counters since it was created: the sums over ``routes``.

    ``routes`` maps each route rule (``""`` for calls made without one) to its
    `RouteStatistics`, whose docstring says what each figure counts.  ``store_available`` is
    false while the store is down (serving without it).
    """

    hits: int
    misses: int
    collapsed: int
    computations: int
    failures: int
    running: int
    store_available: bool
    rejected: int = 0
    stale: int = 0
    pending: int = 0
    timeouts: int = 0
    held: int = 0
    routes: Mapping[str, RouteStatistics] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, tallies: Mapping[str, Tally], store_available: bool) -> CacherStatistics:
        routes = {route: tally.snapshot() for route, tally in tallies.items()}
        figures = routes.values()
        return cls(
            hits=sum(r.hits for r in figures),
            misses=sum(r.misses for r in figures),
            collapsed=sum(r.collapsed for r in figures),
            computations=sum(r.computations for r in figures),
            failures=sum(r.failures for r in figures),
            running=sum(r.running for r in figures),
            store_available=store_available,
            rejected=sum(r.rejected for r in figures),
            stale=sum(r.stale for r in figures),
            pending=sum(r.pending for r in figures),
            timeouts=sum(r.timeouts for r in figures),
            held=sum(r.held for r in figures),
            routes=MappingProxyType(routes),
        )
