"""The values the queue engine hands out: jobs, enqueue results, figures; and its errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import WorkerlessError
from .._remote_backlog import FragmentBacklog

__all__ = [
    "PRIORITIES",
    "Enqueued",
    "Job",
    "JobNotFound",
    "JobStatus",
    "LeaseLost",
    "QueueInfo",
    "check_job_id",
    "check_queue_name",
]

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
JOB_ID = re.compile(r"[0-9a-f]{24}")


class JobNotFound(WorkerlessError, LookupError):
    """No job with this id in this queue (never posted, done, or deleted)."""


class LeaseLost(WorkerlessError):
    """The job is not held under this lease: it moved to another taker after the lease ran out,
    or it is not taken at all.  The job itself is kept; its current holder answers for it."""


def check_queue_name(name: str) -> str:
    """``name`` if it is a valid queue name (1-64 of ``A-Za-z0-9_.-``, not starting with a
    punctuation mark), else ValueError."""
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"bad queue name {name[:80]!r}: 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_job_id(job_id: str) -> str:
    """``job_id`` if it has the shape of the ids this engine makes, else JobNotFound."""
    if not JOB_ID.fullmatch(job_id):
        raise JobNotFound(f"no job {job_id[:80]!r}")
    return job_id


@dataclass(frozen=True, slots=True)
class Job:
    """A job taken with a lease: hand back ``lease`` with done, fail, release or touch.

    ``body`` is the JSON text as it was posted; ``attempt`` counts from 1 (each failure and
    each lease that ran out counts one).
    """

    queue: str
    id: str
    body: str
    priority: Priority
    attempt: int
    lease: str

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The result of an enqueue: the job's id, and whether it was added (False: ``uniq``
    found another pending job with the same key, whose id this is)."""

    id: str
    added: bool


@dataclass(frozen=True, slots=True)
class JobStatus:
    """Where one job stands: state waiting, taken, delayed or dead; its attempts so far, its
    last error, its body, and when it was posted (epoch seconds)."""

    id: str
    state: Literal["waiting", "taken", "delayed", "dead"]
    priority: Priority
    attempts: int
    error: str
    body: str
    created: float


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue's figures, read in one atomic step.

    ``length`` jobs wait to be taken, ``pending`` are taken and not acknowledged,
    ``delayed`` wait for their time (retries included), ``dead`` failed for good.
    ``waiting`` counts the held take requests of every server process, ``oldest_age`` the
    seconds since the oldest job in the streams became available (None: no job).  Rates are
    jobs per second over the last full 10 s.  ``fragments``: the jobs of ``compute="worker"``
    fragments on this queue (None if it never had one); length, pending, dead and
    oldest_age count them too.
    """

    name: str
    length: int
    pending: int
    delayed: int
    dead: int
    stopped: bool
    waiting: int
    oldest_age: float | None
    counts: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    fragments: FragmentBacklog | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.name,
            "length": self.length,
            "pending": self.pending,
            "delayed": self.delayed,
            "dead": self.dead,
            "stopped": self.stopped,
            "consumers": {"waiting": self.waiting, "working": self.pending},
            "oldest_age": self.oldest_age,
            "counts": self.counts,
            "rates": self.rates,
            "fragments": None if self.fragments is None else self.fragments.as_dict(),
        }
