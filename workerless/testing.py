"""Helpers for users' own tests: capture the events a Cacher, Workerless or
WorkerlessMiddleware emits, and (with pytest installed) `StoreContract`, the test suite every
store must pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._cacher import Cacher
from ._events import Event
from ._fragment import Workerless
from ._middleware import WorkerlessMiddleware

__all__ = ["CapturedEvents", "capture_events"]

try:
    import pytest  # noqa: F401 - only to learn whether the contract suite can be offered
except ImportError:  # capture_events needs no pytest
    pass
else:
    from ._contract import Plant, StoreContract, running_store

    __all__ += ["Plant", "StoreContract", "running_store"]

E = TypeVar("E", bound=Event)


class CapturedEvents(list[Event]):
    """The events emitted while capturing, in order."""

    def of(self, kind: type[E]) -> list[E]:
        """Only the events of one type, e.g. ``events.of(Hit)``."""
        return [event for event in self if isinstance(event, kind)]


@contextmanager
def capture_events(
    source: Cacher[Any] | Workerless | WorkerlessMiddleware,
) -> Iterator[CapturedEvents]:
    """Record every event ``source`` emits inside the block."""
    cacher = source if isinstance(source, Cacher) else source.cacher
    events = CapturedEvents()
    remove = cacher.on(Event, events.append)
    try:
        yield events
    finally:
        remove()
