"""Typed, frozen events a Cacher emits, their subscriptions, and its statistics snapshot."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "CacherStatistics",
    "Event",
    "EventName",
    "Failed",
    "Hit",
    "Listeners",
    "Miss",
    "Refreshed",
    "Rejected",
    "Stale",
    "Stored",
]

logger = logging.getLogger("workerless")

EventName = Literal["hit", "miss", "stored", "failed", "rejected", "stale", "refreshed"]


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
class Stale(Event):
    """A value past its ttl was served: ``age`` seconds past it.

    With ``failure`` empty, it was served at once while a refresh runs (stale-while-revalidate);
    otherwise the computation that should have replaced it failed (stale-if-error).
    """

    age: float = 0.0
    failure: str = ""


@dataclass(frozen=True, slots=True)
class Refreshed(Event):
    """A background refresh (of a stale value, or an early one) stored a new value."""

    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """A miss was refused because ``limit`` computations were already running in this process."""

    limit: int = 0


_BY_NAME: dict[str, type[Event]] = {
    "hit": Hit,
    "miss": Miss,
    "stored": Stored,
    "failed": Failed,
    "rejected": Rejected,
    "stale": Stale,
    "refreshed": Refreshed,
}

E = TypeVar("E", bound=Event)
Listener = Callable[[E], Awaitable[None] | None]


class Listeners:
    """Callbacks subscribed by event type; a subscription to a base class receives subclasses.

    Sync callbacks run inline and must be quick; async ones are started with ``spawn``.  An
    exception in a callback is logged and never reaches the code that emitted the event.
    """

    def __init__(self) -> None:
        self._by_type: dict[type[Event], list[Listener[Any]]] = {}
        self._resolved: dict[type[Event], tuple[Listener[Any], ...]] = {}

    def subscribe(self, kind: type[E] | str, callback: Listener[E]) -> Callable[[], None]:
        if isinstance(kind, str):
            if kind not in _BY_NAME:
                raise ValueError(f"unknown event {kind!r}; expected one of {tuple(_BY_NAME)}")
            kind = _BY_NAME[kind]  # type: ignore[assignment]
        if not (isinstance(kind, type) and issubclass(kind, Event)):
            raise TypeError(f"expected an Event subclass such as Hit, not {kind!r}")
        if not callable(callback):
            raise TypeError(f"the callback must be callable, not {callback!r}")
        self._by_type.setdefault(kind, []).append(callback)
        self._resolved.clear()

        def unsubscribe() -> None:
            self._by_type[kind].remove(callback)
            self._resolved.clear()

        return unsubscribe

    def wanted(self, kind: type[Event]) -> bool:
        """Whether anyone listens to ``kind``: lets the hot path skip building the event."""
        return bool(self._for(kind))

    def emit(self, event: Event, spawn: Callable[..., object] | None) -> None:
        for callback in self._for(type(event)):
            try:
                result = callback(event)
            except Exception:
                logger.exception("%s listener %r raised", type(event).__name__, callback)
                continue
            if inspect.isawaitable(result) and spawn is not None:
                spawn(_await_listener, type(event).__name__, result)

    def _for(self, kind: type[Event]) -> tuple[Listener[Any], ...]:
        found = self._resolved.get(kind)
        if found is None:
            found = tuple(
                callback for base in kind.__mro__ for callback in self._by_type.get(base, ())
            )
            self._resolved[kind] = found
        return found


async def _await_listener(name: str, awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("async %s listener raised", name)


@dataclass(frozen=True, slots=True)
class CacherStatistics:
    """A snapshot of a Cacher's counters since it was created.

    ``rejected`` counts misses refused because ``max_computations`` were running; ``stale``
    counts values served past their ttl (a stale serve is not a miss).
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
