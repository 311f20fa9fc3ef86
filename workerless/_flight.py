"""What one computation is, and what its callers get: flights, outcomes, and Fetched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import trio

from ._claim import Failure

__all__ = ["Fetched", "Flight", "Rules", "Success"]

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

    ``outcome`` is written once, by the computation's task, just before ``done`` is set;
    ``wake`` is set when done, or when the cacher starts draining (then ``done`` may be
    false).  A ``coordinated`` flight computes only under the key's lease (one per fleet) and
    announces its end; an uncoordinated one (a private answer's hit-for-miss) just computes.
    """

    __slots__ = ("coordinated", "done", "key", "outcome", "route", "store_available", "wake")

    def __init__(self, key: str, *, coordinated: bool, route: str = "") -> None:
        self.key = key
        self.route = route  # the rule of the route that started it, for events and figures
        self.coordinated = coordinated
        self.wake = trio.Event()
        self.done = False
        self.outcome: Success[Any] | Failure | None = None
        self.store_available = True
