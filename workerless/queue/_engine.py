"""QueueEngine: JSON jobs on Redis Streams consumer groups, with leases, retries and held takes."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._errors import ConfigurationError
from .._redis_errors import RedisErrors
from .._remote_backlog import FragmentDead, delete_dead, read_backlog, read_dead
from . import _scripts
from ._desk import Desk
from ._job import (
    PRIORITIES,
    Enqueued,
    Job,
    JobNotFound,
    JobStatus,
    LeaseLost,
    Priority,
    QueueInfo,
    check_job_id,
    check_queue_name,
)

__all__ = ["QueueEngine"]

logger = logging.getLogger("workerless.queue")
T = TypeVar("T")
_BLOCK_MS = 1000  # the longest a watcher blocks: bounds how late an expired lease is seen


class QueueEngine:
    """Queues of JSON jobs in one Redis, shared by every process pointed at it.

    Each queue is three streams (high, normal, low priority; high drains first) read through
    one consumer group; a take gives the next job with a lease of ``lease`` s, during which
    no other take gets it.  ``done`` removes it; ``fail`` retries it after ``backoff`` s
    (doubling per attempt, at most ``max_backoff``) until ``max_attempts`` attempts, then
    moves it to the queue's dead-letter set; a lease that runs out gives the job to the next
    take (and counts as an attempt).  Delivery is at least once: a job runs again when its
    taker did not acknowledge it within its lease.  Calls raise `StoreUnavailable` when
    Redis cannot be reached and succeed again once it is back.

    Held takes (``take(..., wait=N)``) need `run` going: one watcher per queue and process
    blocks on the streams (``XREAD BLOCK``) and hands each new job to the oldest held take.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "workerless:",
        lease: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        max_threads: int = 32,
        socket_timeout: float = 5.0,
    ) -> None:
        if lease <= 0 or max_attempts < 1 or backoff < 0 or max_backoff < 0:
            raise ValueError("lease and max_attempts must be positive, backoffs not negative")
        self._errors = RedisErrors(url, prefix)
        self.url = self._errors.url
        self.prefix = prefix
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        try:
            options: dict[str, Any] = {
                "socket_connect_timeout": 1.0,
                "retry": Retry(NoBackoff(), 0),
                "client_name": "workerless-queue",
            }
            self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout, **options)
            # Watchers block up to _BLOCK_MS on their own connections.
            self._blocking = redis.Redis.from_url(
                url, socket_timeout=socket_timeout + _BLOCK_MS / 1000, **options
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"queue URL {self.url}: {self._errors.scrub(str(exc))}"
            ) from None
        self._limiter = trio.CapacityLimiter(max_threads)
        self._origin = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        register = self._client.register_script
        self._enqueue = register(_scripts.ENQUEUE)
        self._take = register(_scripts.TAKE)
        self._finish = register(_scripts.FINISH)
        self._status = register(_scripts.STATUS)
        self._dead_retry = register(_scripts.DEAD_RETRY)
        self._dead_delete = register(_scripts.DEAD_DELETE)
        self._info = register(_scripts.INFO)
        self._waiting = register(_scripts.WAITING)
        self._desks: dict[str, Desk] = {}
        self._nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return f"QueueEngine({self.url!r}, prefix={self.prefix!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Check that Redis answers; raises StoreUnavailable (or StoreError) if not."""
        await self._call(self._client.ping)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the watchers of held takes until cancelled; started at once."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def close(self) -> None:
        """Close the connections to Redis."""
        self._client.close()
        self._blocking.close()

    # -- jobs ------------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        body: str,
        *,
        priority: Priority = "normal",
        delay: float = 0.0,
        uniq: str | None = None,
    ) -> Enqueued:
        """Add the JSON text ``body`` to ``queue`` (created on first use), to be taken after
        ``delay`` s.  With ``uniq``, nothing is added while a job posted with the same key is
        still pending (not done, not dead); its id comes back with ``added=False``."""
        check_queue_name(queue)
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be 0 or a positive number of seconds, not {delay!r}")
        job_id = secrets.token_hex(12)
        keys = [self._base(queue), f"{self.prefix}queues"]
        args = [queue, job_id, body, priority, _ms(delay) if delay else 0, uniq or ""]
        desk = self._desks.get(queue)
        if delay or desk is None or not desk.waiting():
            added, found = await self._call(self._enqueue, keys, args)
            return Enqueued(_text(found), bool(added))
        # A take of this process is held: take for it in the same round trip, without
        # waiting for the watcher's XREAD to wake.  Shielded: a job taken in the thread must
        # come back here, to be handed over or released.
        lease = secrets.token_hex(12)
        with trio.CancelScope(shield=True):
            (added, found), reply = await self._call(
                self._enqueue_and_take_sync, queue, keys, args, lease
            )
        job, _ = self._parse_take(queue, lease, reply)
        if job is not None and not desk.hand(job):
            with trio.CancelScope(shield=True):
                await self.release(job)
        return Enqueued(_text(found), bool(added))

    async def take(self, queue: str, *, wait: float = 0.0) -> Job | None:
        """The next job of ``queue`` under a fresh lease, or None if none came within
        ``wait`` s (or the queue is stopped).  A job handed to a take that was cancelled
        meanwhile is released at once, never lost; one whose answer never reached its client
        comes back when its lease runs out."""
        check_queue_name(queue)
        job, seen = await self._take_now(queue)
        if job is not None or wait <= 0:
            return job
        if self._nursery is None:
            raise RuntimeError("held takes need QueueEngine.run() going in a nursery")
        desk = self._desks.get(queue)
        if desk is None:
            desk = self._desks[queue] = Desk(queue, seen)
            self._nursery.start_soon(self._watch, desk)
        return await desk.wait(wait, self.release)

    async def done(self, job: Job | tuple[str, str, str]) -> None:
        """Acknowledge: the job is removed.  LeaseLost if its lease moved to another taker
        (or it is not taken), JobNotFound if it does not exist."""
        await self._act("done", job)

    async def fail(self, job: Job | tuple[str, str, str], reason: str) -> Literal["retry", "dead"]:
        """Report a failure: the job is retried after its backoff, or moved to the dead-letter
        set past ``max_attempts``; says which.  Errors as `done`."""
        return cast(Literal["retry", "dead"], await self._act("fail", job, reason))

    async def release(self, job: Job | tuple[str, str, str]) -> None:
        """Give the job back untried: it goes to the end of its queue, no attempt counted."""
        await self._act("release", job)

    async def touch(self, job: Job | tuple[str, str, str]) -> None:
        """Start the job's lease again (for long jobs).  Errors as `done`."""
        await self._act("touch", job)

    async def status(self, queue: str, job_id: str) -> JobStatus:
        """Where the job stands; JobNotFound if it does not exist (or is done)."""
        check_queue_name(queue)
        check_job_id(job_id)
        found = await self._call(self._status, [self._base(queue)], [job_id])
        if not found:
            raise JobNotFound(f"no job {job_id} in queue {queue}")
        state, priority, attempts, error, body, created = (_text(v) for v in found)
        return JobStatus(
            job_id,
            cast(Any, state),
            cast(Priority, priority),
            int(attempts),
            error,
            body,
            int(created) / 1000,
        )

    async def retry_dead(self, queue: str, job_id: str) -> None:
        """Put a dead job back in its queue with its attempts reset; JobNotFound if not dead."""
        await self._dead(self._dead_retry, queue, job_id)

    async def delete_dead(self, queue: str, job_id: str) -> None:
        """Delete a dead job for good; JobNotFound if it is not dead."""
        await self._dead(self._dead_delete, queue, job_id)

    async def dead_jobs(self, queue: str, limit: int = 100) -> list[JobStatus]:
        """The most recent dead jobs of ``queue``, newest first, at most ``limit``."""
        check_queue_name(queue)
        ids = await self._call(self._client.zrevrange, f"{self._base(queue)}dead", 0, limit - 1)
        found = []
        for raw in ids:
            try:
                found.append(await self.status(queue, _text(raw)))
            except JobNotFound:  # deleted meanwhile
                continue
        return found

    async def dead_fragment_jobs(self, queue: str, limit: int = 100) -> list[FragmentDead]:
        """The most recent dead-lettered ``compute="worker"`` fragment jobs of ``queue``,
        newest first, at most ``limit``."""
        check_queue_name(queue)
        return await self._call(read_dead, self._client, self.prefix, queue, limit)

    async def delete_dead_fragment_job(self, queue: str, entry_id: str) -> None:
        """Delete a dead-lettered fragment job for good; JobNotFound if there is none."""
        check_queue_name(queue)
        if not await self._call(delete_dead, self._client, self.prefix, queue, entry_id):
            raise JobNotFound(f"no dead fragment job {entry_id} in queue {queue}")

    # -- queues ----------------------------------------------------------------------------

    async def queues(self) -> list[str]:
        """The names of every queue that ever had a job, sorted."""
        names = await self._call(self._client.smembers, f"{self.prefix}queues")
        return sorted(n for n in map(_text, names) if _valid(n))

    async def info(self, queue: str) -> QueueInfo:
        """The queue's figures (see `QueueInfo`), read atomically."""
        check_queue_name(queue)
        reply = await self._call(self._info, [self._base(queue)], [])
        length, pending, delayed, dead, stopped, oldest, now, waiting, counts, rates = reply
        flat = [_text(v) for v in counts]
        # The fragment jobs' figures are read next, not in the same step: a glimpse apart.
        fragments = await self._call(read_backlog, self._client, self.prefix, queue)
        ages = [] if int(oldest) < 0 else [max(0, int(now) - int(oldest)) / 1000]
        if fragments is not None and fragments.oldest_age is not None:
            ages.append(fragments.oldest_age)
        return QueueInfo(
            queue,
            length=int(length) + (fragments.waiting if fragments else 0),
            pending=int(pending) + (fragments.pending if fragments else 0),
            delayed=int(delayed),
            dead=int(dead) + (fragments.dead if fragments else 0),
            stopped=bool(stopped),
            waiting=int(waiting),
            oldest_age=max(ages, default=None),
            fragments=fragments,
            counts={k: int(v) for k, v in zip(flat[::2], flat[1::2], strict=True)},
            rates={
                k: int(v) / 10 for k, v in zip(("enqueued", "done", "failed"), rates, strict=True)
            },
        )

    async def stop(self, queue: str) -> None:
        """Stop handing out the queue's jobs (posts are still accepted)."""
        check_queue_name(queue)
        await self._call(self._client.set, f"{self._base(queue)}stopped", 1)

    async def start(self, queue: str) -> None:
        """Hand out the queue's jobs again, waking the held takes of every process."""
        check_queue_name(queue)
        base = self._base(queue)
        await self._call(self._client.delete, f"{base}stopped")
        await self._call(self._client.xadd, f"{base}signal", {"w": 1}, "*", 100)

    async def now(self) -> float:
        """Redis's clock, in epoch seconds: the clock delays and leases are measured on."""
        seconds, micros = await self._call(self._client.time)
        return int(seconds) + int(micros) / 1e6

    # -- internals -------------------------------------------------------------------------

    def _base(self, queue: str) -> str:
        return f"{self.prefix}q:{{{queue}}}:"

    async def _take_now(self, queue: str) -> tuple[Job | None, tuple[list[str], float]]:
        """One atomic take: the job (or None), the streams' last ids, and the seconds until
        the next delayed job is due (-1: none)."""
        lease = secrets.token_hex(12)
        return self._parse_take(queue, lease, await self._call(self._take_sync, queue, lease))

    def _take_sync(self, queue: str, lease: str) -> Any:
        return self._take([self._base(queue)], [lease, _ms(self.lease), self.max_attempts])

    def _enqueue_and_take_sync(
        self, queue: str, keys: list[str], args: list[Any], lease: str
    ) -> list[Any]:
        """Enqueue, then one atomic take under ``lease``: one thread hop, one round trip."""
        pipe = self._client.pipeline(transaction=False)
        self._enqueue(keys, args, client=pipe)
        self._take([self._base(queue)], [lease, _ms(self.lease), self.max_attempts], client=pipe)
        return pipe.execute()

    def _wait_and_take_sync(
        self, desk: Desk, lease: str, streams: dict[Any, Any], block: int
    ) -> Any:
        """Block until one of ``streams`` moves past its id, then take: one thread hop.
        No take when the desk emptied meanwhile (an enqueue of this process served it)."""
        if not self._blocking.xread(streams, None, block) or not desk.waiters:
            return None
        return self._take_sync(desk.queue, lease)

    def _parse_take(
        self, queue: str, lease: str, reply: Any
    ) -> tuple[Job | None, tuple[list[str], float]]:
        job_id, body, priority, attempt, due = (_text(v) for v in reply[:5])
        seen = ([_text(v) for v in reply[5:]], int(due) / 1000 if int(due) >= 0 else -1.0)
        if not job_id:
            return None, seen
        job = Job(queue, job_id, body, cast(Priority, priority), int(attempt), lease)
        return job, seen

    async def _watch(self, desk: Desk) -> None:
        """Hand the queue's new jobs to its held takes while there are any (one per process).

        Blocks on the queue's streams (``XREAD BLOCK`` from the last ids the take saw, so no
        entry slips between a take and the block) for at most a second, or until the next
        delayed job is due, then takes for the oldest held requests.
        """
        base = self._base(desk.queue)
        streams = [f"{base}{name}" for name in ("s:high", "s:normal", "s:low", "signal")]
        registered = (-1, 0.0)  # the count of held takes last registered, and when
        job: Job | None = None
        try:
            while desk.waiters:
                while desk.waiters:
                    if job is None:
                        job, desk.seen = await self._take_now(desk.queue)
                    if job is None:
                        break
                    if not desk.hand(job):
                        await self.release(job)
                    job = None
                if not desk.waiters:
                    break
                now = trio.current_time()
                if registered[0] != len(desk.waiters) or now - registered[1] > 1:
                    registered = (len(desk.waiters), now)
                    await self._call(
                        self._waiting, [f"{base}waiting"], [self._origin, len(desk.waiters)]
                    )
                last_ids, due = desk.seen
                block = _BLOCK_MS if due < 0 else max(1, min(_BLOCK_MS, _ms(due)))
                lease = secrets.token_hex(12)
                # Shielded: a job taken in the thread must come back here, to be handed over or
                # released, even on shutdown (which waits at most one block for it).
                with trio.CancelScope(shield=True):
                    reply = await self._call(
                        self._wait_and_take_sync,
                        desk,
                        lease,
                        dict(zip(streams, last_ids, strict=True)),
                        block,
                    )
                if reply is not None:
                    job, desk.seen = self._parse_take(desk.queue, lease, reply)
        except Exception as exc:
            logger.error("queue %s: the watcher of held takes stopped: %s", desk.queue, exc)
        finally:
            del self._desks[desk.queue]
            desk.close()
            # Redis down: the entry expires by itself, and a job taken here its lease.
            shielded = trio.CancelScope(shield=True)
            with shielded, trio.move_on_after(2), contextlib.suppress(Exception):
                if job is not None:
                    await self.release(job)
                await self._call(self._client.hdel, f"{base}waiting", self._origin)

    async def _act(self, action: str, job: Job | tuple[str, str, str], reason: str = "") -> str:
        queue, job_id, lease = (job.queue, job.id, job.lease) if isinstance(job, Job) else job
        check_queue_name(queue)
        check_job_id(job_id)
        args = [action, job_id, lease, reason[:2000], self.max_attempts]
        args += [_ms(self.backoff) if self.backoff else 0, _ms(self.max_backoff)]
        status, _ = (_text(v) for v in await self._call(self._finish, [self._base(queue)], args))
        if status == "unknown":
            raise JobNotFound(f"no job {job_id} in queue {queue}")
        if status in ("moved", "not-taken"):
            raise LeaseLost(f"job {job_id} of queue {queue} is not held under this lease")
        return "retry" if status == "ok" else status

    async def _dead(self, script: Any, queue: str, job_id: str) -> None:
        check_queue_name(queue)
        check_job_id(job_id)
        if not await self._call(script, [self._base(queue)], [job_id]):
            raise JobNotFound(f"no dead job {job_id} in queue {queue}")

    async def _call(self, fn: Callable[..., T], *args: Any, abandon: bool = False) -> T:
        try:
            return await trio.to_thread.run_sync(
                fn, *args, limiter=self._limiter, abandon_on_cancel=abandon
            )
        except (redis.RedisError, OSError) as exc:
            raise self._errors.error("lost Redis at", exc) from exc


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _valid(name: str) -> bool:
    try:
        check_queue_name(name)
    except ValueError:
        return False
    return True
