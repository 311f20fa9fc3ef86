"""Where the fragment jobs of a queue are in Redis, and their backlog as the queue service shows it.

The jobs of ``compute="worker"`` routes live in streams of their own (their lease and their
one-job-per-key marker are taken with the job in one script, see `_remote_scripts`), not in
the `QueueEngine`'s: this module is the one place that names those keys and reads their
figures, for the fragment worker and for the queue service's ``/j/<queue>``, ``/stats/``,
``/dead/<queue>`` and page.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import redis

__all__ = [
    "ENTRY_ID",
    "GROUP",
    "FragmentBacklog",
    "FragmentDead",
    "dead_key",
    "delete_dead",
    "read_backlog",
    "read_dead",
    "stream_key",
]

logger = logging.getLogger("workerless.queue")

GROUP = "workerless"  # the consumer group of every fragment-job stream
ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # a stream entry id


def stream_key(prefix: str, queue: str) -> str:
    """The stream of ``queue``'s fragment jobs."""
    return f"{prefix}fragments:{queue}"


def dead_key(prefix: str, queue: str) -> str:
    """The stream of ``queue``'s dead-lettered fragment jobs."""
    return f"{stream_key(prefix, queue)}:dead"


@dataclass(frozen=True, slots=True)
class FragmentBacklog:
    """The fragment jobs of one queue: ``waiting`` not yet taken by a worker, ``pending``
    taken and not acknowledged, ``dead`` dead-lettered; ``oldest_age`` the seconds since the
    oldest waiting or pending job was added (None: none)."""

    waiting: int
    pending: int
    dead: int
    oldest_age: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "pending": self.pending,
            "dead": self.dead,
            "oldest_age": self.oldest_age,
        }


@dataclass(frozen=True, slots=True)
class FragmentDead:
    """One dead-lettered fragment job: its dead-letter entry ``id``, the runs it had, why it
    died, the job (JSON text, at most 2,000 characters) and when it died (epoch seconds)."""

    id: str
    attempts: int
    error: str
    job: str
    created: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "fragment",
            "attempts": self.attempts,
            "error": self.error,
            "job": self.job,
            "created": self.created,
        }


def read_backlog(client: redis.Redis, prefix: str, queue: str) -> FragmentBacklog | None:
    """``queue``'s fragment backlog, or None if no fragment job was ever queued on it
    (blocking; redis-py's errors pass through).  ``waiting`` is the consumer group's lag,
    which Redis cannot tell after entries were deleted from the stream: then 0."""
    stream = stream_key(prefix, queue)
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError as exc:  # no such stream, or someone else's data there
        if "WRONGTYPE" in str(exc):
            logger.warning("queue %s: %s holds foreign data, not fragment jobs", queue, stream)
        return None
    group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
    if group is None:  # the stream exists, no worker ever read it: every entry waits
        group = {"lag": client.xlen(stream), "pending": 0, "last-delivered-id": "0-0"}
    waiting, pending = int(group.get("lag") or 0), int(group.get("pending") or 0)
    oldest_ms: list[int] = []
    if pending:
        summary: Any = client.xpending(stream, GROUP)
        oldest_ms.append(_entry_ms(summary["min"]))
    if waiting:
        after = _text(group["last-delivered-id"])
        first: Any = client.xrange(stream, min=f"({after}", count=1)
        if first:
            oldest_ms.append(_entry_ms(first[0][0]))
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    age = max(0, now_ms - min(oldest_ms)) / 1000 if oldest_ms else None
    try:
        dead = int(client.xlen(dead_key(prefix, queue)))
    except redis.ResponseError as exc:
        _foreign(queue, exc)
        dead = 0
    return FragmentBacklog(waiting, pending, dead, age)


def read_dead(client: redis.Redis, prefix: str, queue: str, limit: int) -> list[FragmentDead]:
    """The most recent dead-lettered fragment jobs of ``queue``, newest first (blocking)."""
    found: list[FragmentDead] = []
    try:
        entries: Any = client.xrevrange(dead_key(prefix, queue), count=limit)
    except redis.ResponseError as exc:
        _foreign(queue, exc)
        return found
    for entry_id, fields in entries:
        try:
            record = json.loads(fields.get(b"job", b"{}"))
        except ValueError:
            record = {}
        record = record if isinstance(record, dict) else {}
        job = record.get("job") if isinstance(record.get("job"), dict) else {}
        attempt = job.get("attempt") if isinstance(job, dict) else 0
        found.append(
            FragmentDead(
                _text(entry_id),
                (attempt if isinstance(attempt, int) else 0) + 1,
                str(record.get("reason", "")),
                json.dumps(job or record.get("raw", ""))[:2000],
                _entry_ms(entry_id) / 1000,
            )
        )
    return found


def delete_dead(client: redis.Redis, prefix: str, queue: str, entry_id: str) -> bool:
    """Delete one dead-lettered fragment job; False if there was none with that id."""
    return bool(client.xdel(dead_key(prefix, queue), entry_id))


def _foreign(queue: str, exc: redis.ResponseError) -> None:
    """Someone else's data where the dead letters go is logged (and read as none); any
    other error is raised again."""
    if "WRONGTYPE" not in str(exc):
        raise exc
    logger.warning("queue %s: its fragment dead-letter key holds foreign data", queue)


def _entry_ms(entry_id: Any) -> int:
    return int(_text(entry_id).partition("-")[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
