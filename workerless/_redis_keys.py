"""Where RedisStore keeps each thing in Redis: one hash slot per bucket of keys.

Every Redis key of a cache key carries the hash tag of its bucket, ``{prefix}{bbb}...``, so its
value, its lease and its bucket's invalidation epoch share one Redis Cluster slot and every
script touches one slot only.  There are `BUCKETS` buckets (a key's bucket is the CRC-32 of
the key), each with its own epoch: `delete` increases the epoch of the key's bucket,
`delete_prefix` the epoch of every bucket (it cannot know which keys it will meet).  A
computation reads its key's bucket epoch before it starts and stores only while it is
unchanged, so a computation racing an invalidation of its key is never stored; one racing
the invalidation of another key of the same bucket is not stored either (1 in 1024).
"""

from __future__ import annotations

import re
import zlib

from redis.crc import key_slot

__all__ = ["BUCKETS", "KeyLayout", "glob_escape"]

BUCKETS = 1024
_SLOTS = 16384
_GLOB_METACHARACTERS = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return _GLOB_METACHARACTERS.sub(r"\\\1", text)


def _tag(bucket: int) -> str:
    return f"{bucket:03x}"


class KeyLayout:
    """The Redis key names of one store prefix."""

    __slots__ = ("_epochs", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._epochs = tuple(f"{prefix}{{{_tag(b)}}}epoch" for b in range(BUCKETS))

    def bucket(self, key: str) -> int:
        return zlib.crc32(key.encode()) % BUCKETS

    def value(self, key: str) -> str:
        return f"{self.prefix}{{{_tag(self.bucket(key))}}}v:{key}"

    def lease(self, key: str) -> str:
        return f"{self.prefix}{{{_tag(self.bucket(key))}}}lease:{key}"

    def epoch(self, key: str) -> str:
        """The epoch of ``key``'s bucket."""
        return self._epochs[self.bucket(key)]

    @property
    def epochs(self) -> tuple[str, ...]:
        """Every bucket's epoch key."""
        return self._epochs

    def value_pattern(self, key_prefix: str) -> str:
        """The MATCH pattern of every value key whose cache key starts with ``key_prefix``."""
        return f"{glob_escape(self.prefix)}{{???}}v:{glob_escape(key_prefix)}*"

    def probe_tags(self, spread: int = 16) -> list[str]:
        """Hash tags of buckets whose slots fall in ``spread`` equal parts of the slot range:
        a plain connection to one node of a Redis Cluster meets a MOVED on some of them."""
        found: dict[int, str] = {}
        for bucket in range(BUCKETS):
            part = key_slot(_tag(bucket).encode()) * spread // _SLOTS
            found.setdefault(part, _tag(bucket))
        return [found[part] for part in sorted(found)]
