"""workerless: slow parts of web pages, computed in-process while the connection is held."""

from ._cacher import Cacher
from ._codecs import Codec, JSONCodec
from ._config import Settings, store_from_url
from ._errors import (
    ComputationFailed,
    ConfigurationError,
    Overloaded,
    StillComputing,
    StoreError,
    StoreUnavailable,
    WorkerlessError,
)
from ._events import (
    Event,
    Failed,
    Hit,
    Miss,
    Pending,
    Refreshed,
    Rejected,
    Stale,
    Stored,
    StoreDown,
    StoreUp,
)
from ._flight import Fetched
from ._fragment import FragmentRoute, Workerless
from ._memory import MemoryStore
from ._middleware import CachedRoute, WorkerlessMiddleware
from ._page import stream_template
from ._redis import RedisStore
from ._remote_http import fragment_jobs
from ._remote_worker import FragmentWorker
from ._response import CachedResponse
from ._stats import CacherStatistics, Durations, RouteStatistics
from ._store import Entry, Lease, Notice, Store, Watch
from ._worker import Worker

__version__ = "0.1.0"

__all__ = [
    "CachedResponse",
    "CachedRoute",
    "Cacher",
    "CacherStatistics",
    "Codec",
    "ComputationFailed",
    "ConfigurationError",
    "Durations",
    "Entry",
    "Event",
    "Failed",
    "Fetched",
    "FragmentRoute",
    "FragmentWorker",
    "Hit",
    "JSONCodec",
    "Lease",
    "MemoryStore",
    "Miss",
    "Notice",
    "Overloaded",
    "Pending",
    "RedisStore",
    "Refreshed",
    "Rejected",
    "RouteStatistics",
    "Settings",
    "Stale",
    "StillComputing",
    "Store",
    "StoreDown",
    "StoreError",
    "StoreUnavailable",
    "StoreUp",
    "Stored",
    "Watch",
    "Worker",
    "Workerless",
    "WorkerlessError",
    "WorkerlessMiddleware",
    "__version__",
    "fragment_jobs",
    "store_from_url",
    "stream_template",
]
