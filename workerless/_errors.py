"""The exception tree: every error workerless raises on purpose derives from WorkerlessError."""

from __future__ import annotations

__all__ = [
    "ComputationFailed",
    "ConfigurationError",
    "Overloaded",
    "StillComputing",
    "StoreError",
    "StoreUnavailable",
    "WorkerlessError",
]


class WorkerlessError(Exception):
    """Base class of every error raised by workerless itself."""


class ConfigurationError(WorkerlessError, ValueError):
    """A setting (keyword or environment variable) has a value workerless cannot use."""


class StoreError(WorkerlessError):
    """The store answered but refused: a missing ACL permission, a cluster redirection, a
    script error.  Retrying does not help; the backend's own exception is chained as __cause__.
    """


class StoreUnavailable(StoreError):
    """The store could not be reached (an outage or a timeout); calls may succeed later.

    The backend's own exception is chained as __cause__.
    """


class StillComputing(WorkerlessError):
    """The caller's deadline passed, or the server began to shut down, before the value was ready.

    The computation goes on in the background; asking again later waits on it again.
    ``collapsed`` tells whether the caller joined a computation another caller had started.
    """

    def __init__(self, key: str, *, collapsed: bool = False, shutting_down: bool = False) -> None:
        super().__init__(f"still computing {key!r}")
        self.key = key
        self.collapsed = collapsed
        self.shutting_down = shutting_down


class ComputationFailed(WorkerlessError):
    """The computation raised, or ran past its hard limit (``timed_out``); nothing was cached.

    Every caller waiting on that computation gets this error; the next call computes again.
    """

    def __init__(self, key: str, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(f"computing {key!r} failed: {reason}")
        self.key = key
        self.reason = reason
        self.timed_out = timed_out


class Overloaded(WorkerlessError):
    """A miss found this process already running its maximum number of computations.

    Nothing was started; hits and requests joining a running computation are not affected.
    """

    def __init__(self, key: str, limit: int) -> None:
        super().__init__(f"not computing {key!r}: {limit} computations already running")
        self.key = key
        self.limit = limit
