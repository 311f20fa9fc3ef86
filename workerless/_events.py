"""Typed, frozen events a Cacher emits, their subscriptions, and its statistics snapshot."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ._log import fields, logger

__all__ = [
    "Event",
    "EventName",
    "Failed",
    "Hit",
    "Listeners",
    "Miss",
    "Pending",
    "Refreshed",
    "Rejected",
    "Stale",
    "StoreDown",
    "StoreUp",
    "Stored",
]

EventName = Literal[
    "hit", "miss", "stored", "failed", "rejected", "stale", "refreshed", "pending", "store_down",
    "store_up",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every Cacher event; ``key`` is the cache key it concerns.

    ``route`` is the rule of the fragment route the call came through (``"/weather/<city>"``),
    ``""`` for a Cacher used directly (then it is what ``fetch(..., route=)`` was given).
    """

    key: str
    route: str = field(default="", kw_only=True)


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


@dataclass(frozen=True, slots=True)
class Pending(Event):
    """A caller's deadline passed while the computation runs on (a fragment answered 202).

    ``collapsed`` if it had joined a computation another caller started; ``shutting_down`` if
    it was let go because the server is stopping rather than by its deadline.
    """

    collapsed: bool = False
    shutting_down: bool = False


@dataclass(frozen=True, slots=True)
class StoreDown(Event):
    """The store stopped answering: caching pauses, every miss computes in its own process.

    ``key`` is that of the call that found it down (``""`` for lease renewal), ``route`` that
    of the request whose store read it was (``""`` for a computation's own store calls);
    ``reason`` is the store's error.  Emitted once per outage.
    """

    reason: str = ""


@dataclass(frozen=True, slots=True)
class StoreUp(Event):
    """The store answers again after a `StoreDown`: caching resumes.

    ``key`` and ``route`` are those of the first call that reached it again.
    """


_BY_NAME: dict[str, type[Event]] = {
    "hit": Hit,
    "miss": Miss,
    "stored": Stored,
    "failed": Failed,
    "rejected": Rejected,
    "stale": Stale,
    "refreshed": Refreshed,
    "pending": Pending,
    "store_down": StoreDown,
    "store_up": StoreUp,
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
                logger.exception(
                    "%s listener %r raised",
                    type(event).__name__,
                    callback,
                    extra=fields(event.key, event.route),
                )
                continue
            if inspect.isawaitable(result) and spawn is not None:
                spawn(_await_listener, event, result)

    def _for(self, kind: type[Event]) -> tuple[Listener[Any], ...]:
        found = self._resolved.get(kind)
        if found is None:
            found = tuple(
                callback for base in kind.__mro__ for callback in self._by_type.get(base, ())
            )
            self._resolved[kind] = found
        return found


async def _await_listener(event: Event, awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception(
            "async %s listener raised", type(event).__name__, extra=fields(event.key, event.route)
        )

