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
    CacherStatistics,
    Event,
    Failed,
    Hit,
    Miss,
    Refreshed,
    Rejected,
    Stale,
    Stored,
)
from ._flight import Fetched
from ._fragment import FragmentRoute, Workerless
from ._memory import MemoryStore
from ._redis import RedisStore
from ._remote_http import fragment_jobs
from ._remote_worker import FragmentWorker
from ._response import CachedResponse
from ._store import Entry, Lease, Notice, Store, Watch

__version__ = "0.1.0"

__all__ = [
    "CachedResponse",
    "Cacher",
    "CacherStatistics",
    "Codec",
    "ComputationFailed",
    "ConfigurationError",
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
    "RedisStore",
    "Refreshed",
    "Rejected",
    "Settings",
    "Stale",
    "StillComputing",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Stored",
    "Watch",
    "Workerless",
    "WorkerlessError",
    "__version__",
    "fragment_jobs",
    "store_from_url",
]
