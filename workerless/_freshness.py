"""Freshness: how long a stored value is fresh, then stale, and when to refresh it early.

A value is stored for ``ttl + stale + stale_if_error`` seconds, wrapped in an envelope that
records the two windows after its ttl and how long its computation took.  From the time the
store says the value has left, a reader tells where it stands:

    computed        ttl ends             stale ends                stale_if_error ends
    |---- fresh ------|---- stale ----------|---- stale if error ------|  gone
       hit (maybe an   stale answer at once,  a miss that waits; if the
       early refresh)  one refresh runs       computation fails, the old
                                              value is served instead

Early refresh (XFetch: Vattani et al., "Optimal Probabilistic Cache Stampede Prevention",
VLDB 2015): a hit starts the refresh with a probability that rises as expiry nears and with
the last computation's duration, so a hot key is recomputed before it expires.
"""

from __future__ import annotations

import math
import random
import secrets
import struct
from dataclasses import dataclass
from enum import Enum

__all__ = ["Envelope", "Standing", "should_refresh_early", "standing"]

_MAGIC = b"WLF1"
_LAYOUT = struct.Struct("!4sddd8s")  # magic, stale, stale_if_error, duration, generation
_MAX_WINDOW = 10 * 365 * 86400.0  # no window this library writes is longer than ten years


class Standing(Enum):
    FRESH = "fresh"
    STALE = "stale"  # serve at once, refresh in the background
    STALE_IF_ERROR = "stale-if-error"  # compute and wait; serve it if that fails
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A stored value's payload (the codec's bytes) and what freshness needs to know of it.

    ``generation`` is random per computation: a refresh looks for a value of another
    generation than the one it replaces, so finding the old value never ends it.
    """

    payload: bytes
    stale: float
    stale_if_error: float
    duration: float
    generation: bytes

    @classmethod
    def new(cls, payload: bytes, stale: float, stale_if_error: float, duration: float) -> Envelope:
        return cls(payload, stale, stale_if_error, duration, secrets.token_bytes(8))

    def pack(self) -> bytes:
        head = _LAYOUT.pack(_MAGIC, self.stale, self.stale_if_error, self.duration, self.generation)
        return head + self.payload

    @classmethod
    def unpack(cls, data: bytes) -> Envelope:
        """The envelope in ``data``; ValueError for anything this library would not write."""
        if len(data) < _LAYOUT.size:
            raise ValueError("too short for a workerless entry")
        magic, stale, stale_if_error, duration, generation = _LAYOUT.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a workerless entry")
        for number in (stale, stale_if_error, duration):
            if not (math.isfinite(number) and 0 <= number <= _MAX_WINDOW):
                raise ValueError("invalid freshness record")
        return cls(data[_LAYOUT.size :], stale, stale_if_error, duration, generation)

    @property
    def windows(self) -> float:
        """Seconds the value is kept past its ttl."""
        return self.stale + self.stale_if_error


def standing(envelope: Envelope, remaining: float | None) -> tuple[Standing, float]:
    """Where a value stands, with ``remaining`` seconds left in the store, and its fresh time
    left (negative: seconds since its ttl ended).  No remaining time known: fresh."""
    if remaining is None:
        return Standing.FRESH, math.inf
    fresh_left = remaining - envelope.windows
    if fresh_left > 0:
        return Standing.FRESH, fresh_left
    if -fresh_left < envelope.stale:
        return Standing.STALE, fresh_left
    if remaining > 0:
        return Standing.STALE_IF_ERROR, fresh_left
    return Standing.GONE, fresh_left


def should_refresh_early(duration: float, fresh_left: float, beta: float = 1.0) -> bool:
    """XFetch: refresh when ``duration * beta * -ln(U)`` reaches the fresh time left."""
    if duration <= 0 or duration * beta * _MAX_DRAW < fresh_left:  # inf too: never draw
        return False
    return duration * beta * -math.log(1.0 - random.random()) >= fresh_left


# Above the largest -ln(U) can be (random() is at most 1 - 2**-53: -ln(2**-53) = 36.74).
# Most hits are that far from expiry, and skip the draw.
_MAX_DRAW = 37.0
