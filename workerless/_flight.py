"""What one computation is, and what its callers get: flights, outcomes, and Fetched."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any, Generic, Literal, TypeVar

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule

from ._claim import Failure

__all__ = ["Fetched", "Flight", "Rules", "Success", "Waiters"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A value and how it was obtained.

    ``source`` is ``"hit"`` (read from the store), ``"computed"`` (this call started the
    computation that produced it) or ``"collapsed"`` (it joined a computation started by
    another caller, in this process or another) or ``"stale"`` (a value past its ttl, served
    at once while one refresh runs; or, with ``failure`` set, served because the computation
    that should have replaced it failed: stale-if-error).  ``stored`` tells whether the value
    is in the store; ``ttl`` is its remaining fresh lifetime on a hit (negative when stale).
    """

    value: T
    source: Literal["hit", "computed", "collapsed", "stale"]
    stored: bool = False
    ttl: float | None = None
    store_available: bool = True
    failure: str = ""


@dataclass(frozen=True, slots=True)
class Success(Generic[T]):
    """A computation's value: ``stored`` in the store; ``shared`` with callers who joined."""

    value: T
    stored: bool
    shared: bool
    computed_here: bool


@dataclass(frozen=True, slots=True)
class Rules(Generic[T]):
    """What one computation was asked for: its limits, and which values may be kept or shared."""

    ttl: float
    hard_limit: float
    cacheable: Callable[[T], bool] | None
    shareable: Callable[[T], bool] | None
    stale: float = 0.0
    stale_if_error: float = 0.0
    replacing: bytes | None = None  # a refresh: the generation of the value it replaces


class Flight:
    """One running computation of one key in this process, and what its waiters will get.

    ``outcome`` is written once, by the computation's task, just before ``done`` is set and
    the waiters parked on it are woken (see `Waiters`).  A ``coordinated`` flight computes
    only under the key's lease (one per fleet) and announces its end; an uncoordinated one (a
    private answer's hit-for-miss) just computes.
    """

    __slots__ = ("coordinated", "done", "key", "outcome", "parked", "route", "store_available")

    def __init__(self, key: str, *, coordinated: bool, route: str = "") -> None:
        self.key = key
        self.route = route  # the rule of the route that started it, for events and figures
        self.coordinated = coordinated
        self.done = False
        self.outcome: Success[Any] | Failure | None = None
        self.store_available = True
        # Its waiters: a list, lighter than a set; one that left early stays, emptied.
        self.parked: list[Parked] = []


class Parked:
    """One caller parked on a flight; emptied once woken, by whichever comes first (the
    flight's end, the drain, its deadline, its cancellation): the others then find it empty."""

    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task: Task | None = task

    def unpark(self) -> Task | None:
        """Empty the record: its task if it was still parked, else None."""
        task, self.task = self.task, None
        return task

    def __call__(self, _: Any) -> Abort:
        """Trio's abort function (the record is its own: no bound method per caller)."""
        self.unpark()  # cancelled (the client went away): trio wakes the task itself
        return Abort.SUCCEEDED


class Waiters:
    """Callers parked on flights, woken when the flight ends, when draining, or at their deadline.

    Far lighter than an Event wait under a cancel scope per caller (what a held request is
    made of, thousands at once): a caller costs one small record, and one timer task wakes
    every caller whose deadline passed.  Touched from the trio thread only.
    """

    def __init__(self) -> None:
        self._deadlines: list[tuple[float, int, Parked]] = []  # a heap; woken records linger
        self._order = count()
        self._alarm = trio.CancelScope()  # the timer's sleep: its deadline is the next one
        self._compact_at = _COMPACT_AT

    def park(self, flight: Flight, timeout: float | None) -> Callable[[Any], Abort]:
        """Park the calling task on ``flight`` until it ends, the cacher drains, or ``timeout``
        seconds pass (None: no limit); return the abort function to pass to
        ``trio.lowlevel.wait_task_rescheduled`` (no frame of ours stays alive while parked).
        A cancelled caller leaves the flight and raises as usual."""
        parked = Parked(current_task())
        flight.parked.append(parked)
        if timeout is not None and timeout < math.inf:
            deadlines = self._deadlines
            when = trio.current_time() + timeout
            heappush(deadlines, (when, next(self._order), parked))
            if when < self._alarm.deadline:
                self._alarm.deadline = when
            if len(deadlines) >= self._compact_at:
                # Callers woken before their deadline leave their record behind: drop those.
                deadlines[:] = [entry for entry in deadlines if entry[2].task is not None]
                heapify(deadlines)
                self._compact_at = max(_COMPACT_AT, 2 * len(deadlines))
        return parked

    def wake(self, flight: Flight) -> None:
        """Wake every caller parked on ``flight``."""
        parked, flight.parked = flight.parked, []
        for record in parked:
            task = record.unpark()
            if task is not None:
                reschedule(task)

    async def run(self) -> None:
        """Wake callers at their deadlines, forever (the cacher runs this in its nursery)."""
        deadlines = self._deadlines
        while True:
            with trio.CancelScope(deadline=deadlines[0][0] if deadlines else math.inf) as alarm:
                self._alarm = alarm
                await trio.sleep_forever()
            now = trio.current_time()
            # Wake the callers whose deadline passed; drop the records of callers woken
            # before theirs from the front too, so the next alarm is a live caller's.
            while deadlines and (deadlines[0][0] <= now or deadlines[0][2].task is None):
                task = heappop(deadlines)[2].unpark()
                if task is not None:
                    reschedule(task)


_COMPACT_AT = 1024
