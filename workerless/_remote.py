"""Worker-computed fragments, the web side: one job per key, and requests held for its notice.

A route registered with ``compute="worker"`` never runs its view in the web process.  On a
miss, the process takes the key's lease and adds one job to the route's queue in the same
Redis script (`CLAIM_OR_ENQUEUE`); a `workerless worker` process takes the job, re-enters the
lease with the job's token, runs the view, stores the response and announces it with that
token (see `_remote_worker`).  Meanwhile every request for the key, in every web process,
waits exactly as a waiter on another process's computation: woken by the notice, 202 past
its deadline, 502 if the job failed.  While Redis cannot be reached such a route answers 503:
computing a heavy fragment in the web process is what the option exists to avoid.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import redis
import trio
from quart import request

from ._claim import TAKEOVER_MARGIN, Failure
from ._errors import ComputationFailed, ConfigurationError, StillComputing, StoreError
from ._flight import Fetched
from ._freshness import Standing, standing
from ._redis import RedisStore
from ._redis_channel import encode_notice
from ._remote_backlog import GROUP, dead_key, stream_key
from ._remote_scripts import CLAIM_OR_ENQUEUE, FINISH, RETRY, TOUCH
from ._response import CachedResponse
from ._store import Notice
from .queue._job import QUEUE_NAME

if TYPE_CHECKING:
    from ._fragment import FragmentRoute, Workerless

__all__ = ["FragmentJob", "JobQueue", "RemoteCompute", "check_queue_name"]

logger = logging.getLogger("workerless")

MAX_BLOCK = 30.0  # s a read of jobs blocks at most
# Acknowledged jobs stay in their stream this long (to look at recent work), then go.
KEEP_FINISHED_MS = 10 * 60 * 1000
_MARKER_TTL = 24 * 3600.0  # a job not taken within a day is superseded by the next miss's


def check_queue_name(name: Any, where: str) -> str:
    """``name`` if it is a queue name (the queue service's rule), else ValueError naming
    ``where``."""
    if isinstance(name, str) and QUEUE_NAME.fullmatch(name):
        return name
    raise ValueError(f"queue={where} must be 1-64 letters, digits, '_', '.' or '-', not {name!r}")


@dataclass(frozen=True, slots=True)
class FragmentJob:
    """What a worker needs to run a fragment's view again, and where its result goes.

    ``key`` and ``token`` are the cache key and the lease token the job computes under;
    ``headers`` only those the route's key depends on (its ``headers=``), never the rest of
    the request's; ``url`` is the fragment's URL below the app's mount point, for workers
    that call the app over HTTP.  ``attempt`` counts the failed runs before this one.
    """

    key: str
    token: str
    endpoint: str
    view_args: dict[str, Any]
    method: str
    path: str
    query_string: str
    headers: list[tuple[str, str]]
    varied: list[str]
    root_path: str = ""
    url: str = ""
    attempt: int = 0
    not_before: float = 0.0  # wall-clock time before which a retry does not run
    enqueued_at: float = field(default=0.0)

    def encode(self) -> str:
        # A converter's value JSON cannot hold (a UUID) goes as text; the worker matches the
        # path again, so its view gets the converted value anyway.
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def decode(cls, raw: bytes | str) -> FragmentJob:
        """Parse a job; ValueError (saying what is wrong) for anything else."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            job = cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        strings = (job.key, job.token, job.endpoint, job.method, job.path, job.query_string)
        if not all(isinstance(value, str) for value in strings):
            raise ValueError("key, token, endpoint, method, path, query_string must be strings")
        if not isinstance(job.view_args, dict) or not isinstance(job.attempt, int):
            raise ValueError("view_args must be an object and attempt an integer")
        pairs = [tuple(pair) for pair in job.headers if isinstance(pair, list | tuple)]
        if len(pairs) != len(job.headers) or not all(
            len(pair) == 2 and all(isinstance(part, str) for part in pair) for pair in pairs
        ):
            raise ValueError("headers must be [name, value] string pairs")
        return job

    def again(self, *, attempt: int, not_before: float = 0.0) -> FragmentJob:
        return _replace(self, attempt=attempt, not_before=not_before)


def _replace(job: FragmentJob, **changes: Any) -> FragmentJob:
    return FragmentJob(**{**asdict(job), **changes})


class JobQueue:
    """The fragment jobs of one queue in Redis: a stream read by the consumer group
    ``workerless``, a dead-letter stream, and one marker per key with a pending job.

    Keys: ``{prefix}fragments:{queue}``, ``{prefix}fragments:{queue}:dead``,
    ``{prefix}job:{key}``; the queue's name joins ``{prefix}queues`` (the queue service's
    list) with its first job.  Every call goes through the store's client (its errors become
    `StoreUnavailable`/`StoreError`); blocking reads use a client of their own.
    """

    def __init__(self, store: RedisStore, name: str) -> None:
        self.store = store
        self.name = name
        self.stream = stream_key(store.prefix, name)
        self.dead = dead_key(store.prefix, name)
        self._scripts: dict[str, Any] = {}  # registered on first use: the store connects late
        self._reader: redis.Redis | None = None
        self._read_limiter = trio.CapacityLimiter(1024)

    def marker_key(self, key: str) -> str:
        return f"{self.store.prefix}job:{key}"

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.store._client.register_script(source)
        return script

    async def claim_or_enqueue(self, job: FragmentJob, lease: float) -> tuple[bool, str, float]:
        """Take ``job.key``'s lease and enqueue ``job`` atomically, unless it is held or a job
        for the key is pending; return (enqueued, the holder's token, seconds its lease lasts)."""
        store = self.store
        keys = [
            store.keys.lease(job.key),
            self.marker_key(job.key),
            self.stream,
            f"{store.prefix}queues",  # the queue service's list of queues: its page shows this one
        ]
        args = [job.token, _ms(lease), _ms(_MARKER_TTL), job.encode(), self.name]
        reply = await store._call(self._script(CLAIM_OR_ENQUEUE), keys, args)
        holder = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        return reply[0] == 1, holder, int(reply[2]) / 1000

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; reading starts at the oldest."""

        def create() -> None:
            try:
                self.store._client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self.store._call(create)

    async def read(self, consumer: str, block: float) -> list[tuple[str, bytes]]:
        """Wait up to ``block`` s (30 at most) for one new job (XREADGROUP BLOCK); its entry id
        and body."""
        block = min(block, MAX_BLOCK)
        if self._reader is None:
            pool = self.store._client.connection_pool
            # One client for every read: its timeout covers the longest BLOCK (30 s).
            kwargs = {**pool.connection_kwargs, "socket_timeout": MAX_BLOCK + 10}
            self._reader = redis.Redis(
                connection_pool=redis.ConnectionPool(
                    connection_class=pool.connection_class, **kwargs
                )
            )
        reader = self._reader
        streams: Any = {self.stream: ">"}
        try:
            # Not through the store's threads: blocked reads would starve its other calls.
            reply: Any = await trio.to_thread.run_sync(
                lambda: reader.xreadgroup(GROUP, consumer, streams, count=1, block=_ms(block)),
                limiter=self._read_limiter,
            )
        except (redis.RedisError, OSError) as exc:
            raise self.store._error("lost Redis at", exc) from exc
        return _entries(reply[0][1] if reply else [])  # RESP2: [[stream, entries]]

    async def reclaim(self, consumer: str, idle: float) -> list[tuple[str, bytes]]:
        """Take over one job whose worker has not touched it for ``idle`` s (XAUTOCLAIM)."""
        reply = await self.store._call(
            lambda: self.store._client.xautoclaim(
                self.stream, GROUP, consumer, _ms(idle), "0-0", count=1
            )
        )
        return _entries(reply[1])

    async def touch(self, consumer: str, entry: str) -> bool:
        """Keep a job ours while it runs (its idle time back to 0); False if it was taken."""
        args = [GROUP, entry, consumer]
        return bool(await self.store._call(self._script(TOUCH), [self.stream], args))

    async def deliveries(self, entry: str) -> int:
        """How many times the entry was delivered (1 for a job read once)."""
        reply = await self.store._call(
            lambda: self.store._client.xpending_range(self.stream, GROUP, entry, entry, 1)
        )
        return int(reply[0]["times_delivered"]) if reply else 1

    async def finish(
        self,
        consumer: str,
        entry: str,
        job: FragmentJob,
        notice: Notice,
        dead: str = "",
        raw: bytes = b"",
    ) -> bool:
        """Acknowledge the job's last attempt, release the key's lease and publish ``notice``,
        in one script; with a ``dead`` reason, dead-letter it (with ``raw``, the entry as
        found, when it was not a job).  False (nothing done) if another worker took it over."""
        store = self.store
        keys = [self.marker_key(job.key), self.stream, store.keys.lease(job.key)]
        message = encode_notice(notice, store._origin)
        args = [job.token, GROUP, entry, consumer, store._channel, message, KEEP_FINISHED_MS]
        if dead:
            record: dict[str, Any] = {"job": asdict(job), "reason": dead}
            if raw:
                record["raw"] = raw[:4096].decode("utf-8", "replace")
            keys.append(self.dead)
            args.append(json.dumps(record))
        store._deliver(notice)  # this process's own waiters first, as the store's announce does
        return bool(await store._call(self._script(FINISH), keys, args))

    async def requeue(self, consumer: str, entry: str, job: FragmentJob) -> bool:
        """Acknowledge ``entry`` and enqueue ``job`` (another attempt) in one step."""
        args = [GROUP, entry, consumer, job.encode(), KEEP_FINISHED_MS]
        return bool(await self.store._call(self._script(RETRY), [self.stream], args))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


class RemoteCompute:
    """The web side of one worker-computed route: serve hits, or enqueue and wait.

    On a miss the first request of this process for a key starts one flight; the others of
    the process join it.  The flight takes the lease and enqueues the job (one per key across
    all processes), then waits for the holder's notice, taking the lease again in the job's
    name each time it lapses (no worker running yet): never a second job, never a computation
    here.  A stored value ends it; a ``failed`` notice from the holder fails every waiter.
    """

    def __init__(
        self, route: FragmentRoute, endpoint: str, queue: str, headers: frozenset[str]
    ) -> None:
        self.route = route
        self.endpoint = endpoint
        self.queue_name = queue
        self.headers = headers
        self._queue: JobQueue | None = None
        self._flights: dict[str, _Flight] = {}

    def start(self, workerless: Workerless) -> None:
        """Bind to the started store; ConfigurationError if it is not Redis."""
        store = workerless.cacher.store
        if not isinstance(store, RedisStore) or store.topology == "cluster":
            # One script takes a key's lease and adds its job: one server, not a cluster.
            raise ConfigurationError(
                f"compute='worker' (queue {self.queue_name!r}) needs a Redis store on one "
                f"server (or Sentinel), not {store!r}: set WORKERLESS_STORE=redis://..."
            )
        self._queue = JobQueue(store, self.queue_name)

    async def fetch(
        self, key: str, view_args: dict[str, Any], varied: frozenset[str], deadline: float
    ) -> Fetched[CachedResponse]:
        """The route's response for ``key``: stored, or computed by a worker within
        ``deadline`` s (else `StillComputing`); `ComputationFailed` if the job failed;
        `StoreError` while Redis cannot be reached."""
        queue = self._queue
        if queue is None:
            raise StoreError("worker-computed fragments start with the app")
        cacher = self.route.workerless.cacher
        entry = await queue.store.get(key)
        found = cacher._read(key, entry)
        replacing: bytes | None = None
        if found is not None:
            value, envelope = found
            position, left = standing(envelope, entry.ttl if entry else None)
            if position is Standing.FRESH:
                return Fetched(value, "hit", stored=True, ttl=None if left == math.inf else left)
            replacing = envelope.generation
            if position is Standing.STALE:
                self._join(key, self._job(key, view_args, varied), replacing)
                return Fetched(value, "stale", stored=True, ttl=left)
        collapsed = key in self._flights
        give_up = trio.current_time() + deadline
        while True:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._join(key, self._job(key, view_args, varied), replacing)
            flight.waiters += 1
            try:
                with trio.move_on_at(give_up):
                    await flight.done.wait()
            finally:
                flight.waiters -= 1
            # A flight that ended for want of waiters just as this one came: wait on a new one.
            if flight.outcome is not None or not flight.done.is_set():
                break
            if trio.current_time() >= give_up:
                break
        outcome = flight.outcome
        if outcome is None:
            raise StillComputing(key, collapsed=collapsed, shutting_down=cacher.draining)
        if isinstance(outcome, Failure):
            raise ComputationFailed(key, outcome.reason, timed_out=outcome.timed_out)
        if isinstance(outcome, StoreError):
            raise outcome
        return Fetched(outcome, "collapsed", stored=True)

    def _job(self, key: str, view_args: dict[str, Any], varied: frozenset[str]) -> FragmentJob:
        """The job for the current request: only the headers the key depends on go with it."""
        names = sorted(self.headers | varied)
        headers = [(name, request.headers[name]) for name in names if name in request.headers]
        query = request.query_string.decode("latin-1")
        url = quote(request.path) + (f"?{query}" if query else "")
        return FragmentJob(
            key=key,
            token=secrets.token_hex(16),
            endpoint=self.endpoint,
            view_args=dict(view_args),
            method="GET",
            path=request.path,
            query_string=query,
            headers=headers,
            varied=sorted(varied),
            root_path=request.root_path,
            url=url,
            enqueued_at=time.time(),
        )

    def _join(self, key: str, job: FragmentJob, replacing: bytes | None) -> _Flight:
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
            nursery = self.route.workerless._nursery
            assert nursery is not None
            nursery.start_soon(self._fly, key, job, replacing, flight)
        return flight

    async def _fly(
        self, key: str, job: FragmentJob, replacing: bytes | None, flight: _Flight
    ) -> None:
        queue = self._queue
        assert queue is not None
        cacher = self.route.workerless.cacher
        lease = cacher.lease
        try:
            while True:
                with queue.store.watch(key) as watch:
                    entry = await queue.store.get(key)
                    found = cacher._read(key, entry)
                    if found is not None and found[1].generation != replacing:
                        flight.outcome = found[0]
                        return
                    enqueued, holder, expires_in = await queue.claim_or_enqueue(job, lease)
                    if enqueued:
                        logger.info("%r: job queued on %r", key, queue.name)
                    notice: Notice | None = None
                    with trio.move_on_after(expires_in + TAKEOVER_MARGIN):
                        notice = await watch.wait()
                if (
                    notice is not None
                    and notice.outcome in ("failed", "timed_out")
                    and notice.token == holder
                ):
                    flight.outcome = Failure(notice.reason, notice.outcome == "timed_out")
                    return
                if not flight.waiters:  # everyone got 202: the job stays queued, nobody waits
                    return
        except StoreError as exc:
            logger.warning("%r: cannot queue its job: %s", key, exc)
            flight.outcome = exc
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()


class _Flight:
    """One process's wait for one key's job: ``outcome`` is set before ``done``; it ends with
    none once no request waits on it (a key nobody computes costs no task)."""

    __slots__ = ("done", "outcome", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.done = trio.Event()
        self.outcome: CachedResponse | Failure | StoreError | None = None


def _entries(raw: Any) -> list[tuple[str, bytes]]:
    """Stream entries as (id, job body); deleted entries (no fields) are skipped."""
    entries = []
    for entry_id, fields in raw or []:
        if fields and b"job" in fields:
            entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            entries.append((entry, cast(Mapping[bytes, bytes], fields)[b"job"]))
    return entries


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
