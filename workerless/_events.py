"""Typed, frozen events a Cacher emits, and its statistics snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CacherStatistics", "Event", "EventName", "Failed", "Hit", "Miss", "Stored"]

EventName = Literal["hit", "miss", "stored", "failed"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every Cacher event; ``key`` is the cache key it concerns."""

    key: str


@dataclass(frozen=True, slots=True)
class Hit(Event):
    """The value was found in the store; ``ttl`` is its remaining lifetime in seconds, if known."""

    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Miss(Event):
    """The value was not in the store; ``collapsed`` if the caller joined a running computation."""

    collapsed: bool = False


@dataclass(frozen=True, slots=True)
class Stored(Event):
    """A computation finished in this process and its value was stored for ``ttl`` seconds."""

    ttl: float = 0.0
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class Failed(Event):
    """A computation in this process raised or ran past its hard limit; nothing was stored."""

    reason: str = ""
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class CacherStatistics:
    """A snapshot of a Cacher's counters since it was created."""

    hits: int
    misses: int
    collapsed: int
    computations: int
    failures: int
    running: int
    store_available: bool
