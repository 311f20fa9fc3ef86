"""Worker-computed fragments, the worker side (``workerless worker app:app --queue reports``).

A `FragmentWorker` imports the same QuartTrio app as the web servers, reads fragment jobs from
its queues (XREADGROUP BLOCK: a job is taken the moment it is added, no polling), and for
each: re-enters the key's lease with the job's token (leases are re-entrant for their token),
runs the view in a request context rebuilt from the job, stores the response and announces it
with that token (the notice the web processes' held requests wait for), then acknowledges.
A failed run announces the failure to every waiter and is retried with backoff; after
``max_attempts`` runs the job is dead-lettered.  A job whose worker died is taken over once
it has not been touched for ``job_lease`` s.  On SIGTERM a worker stops taking jobs, lets
running ones finish for ``grace`` s, then gives the rest back to the queue.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import trio
from quart_trio import QuartTrio

from ._config import Settings, store_from_url
from ._errors import ConfigurationError, StoreError
from ._fragment import FragmentRoute, Workerless
from ._freshness import Envelope
from ._redis import RedisStore
from ._remote import FragmentJob, JobQueue
from ._response import CachedResponse
from ._store import Notice

__all__ = ["FragmentWorker"]

logger = logging.getLogger("workerless.worker")

_HANDOFF_TTL = 2.0  # s a response the route does not cache stays stored for its waiters
_MAX_BACKOFF = 30.0


class FragmentWorker:
    """Runs the fragment jobs of ``queues`` for ``app``, ``concurrency`` at a time.

    ``job_lease``: a job untouched this long (its worker died) goes to another worker;
    a running job is touched every third of it.  ``max_attempts``: failed runs before a job
    is dead-lettered; retry ``n`` waits ``backoff * 2**(n-1)`` s (at most 30).  ``grace``:
    seconds running jobs get after `stop` (default: the app's ``WORKERLESS_GRACE``).
    """

    def __init__(
        self,
        app: QuartTrio,
        queues: Sequence[str],
        *,
        concurrency: int = 1,
        job_lease: float = 30.0,
        max_attempts: int = 3,
        backoff: float = 1.0,
        block: float = 2.0,
        grace: float | None = None,
        environ: Mapping[str, str] | None = None,
        consumer: str | None = None,
    ) -> None:
        workerless = app.extensions.get("workerless")
        if not isinstance(workerless, Workerless):
            raise ConfigurationError(f"{app!r} has no Workerless: no fragment jobs to compute")
        if concurrency < 1 or max_attempts < 1 or job_lease <= 0 or backoff < 0:
            raise ValueError("concurrency, max_attempts and job_lease must be positive")
        if grace is not None and grace < 0:
            raise ValueError("grace must be >= 0")
        known = {route.remote.queue_name for route in _routes(workerless)}
        missing = [name for name in queues if name not in known]
        if missing or not queues:
            raise ConfigurationError(
                f"no compute='worker' fragment of {app.name} uses queue(s) {missing or '[]'}; "
                f"its queues: {sorted(known)}"
            )
        self.app = app
        self.workerless = workerless
        self.queues = list(queues)
        self.concurrency = concurrency
        self.job_lease = job_lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.block = block
        self.settings = Settings.resolve(workerless._keywords, environ)
        self.grace = self.settings.grace if grace is None else grace
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.done = 0  # jobs stored
        self.failed = 0  # runs failed
        self._stopping = trio.Event()

    def stop(self) -> None:
        """Take no more jobs; running ones get the grace period (see `run`)."""
        self._stopping.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take and run jobs until `stop` (or SIGTERM in `main`); started once connected."""
        settings = self.settings
        store = settings.store
        if isinstance(store, str):
            store = store_from_url(
                store, prefix=settings.prefix, near_ttl=0, max_value_bytes=settings.max_value_bytes
            )
        if not isinstance(store, RedisStore) or store.topology == "cluster":
            raise ConfigurationError(
                f"a fragment worker needs a Redis store on one server, not {store!r}"
            )
        await store.open()
        queues = [JobQueue(store, name) for name in self.queues]
        try:
            for queue in queues:
                await queue.ensure_group()
            async with trio.open_nursery() as jobs:
                async with trio.open_nursery() as readers:
                    for slot in range(self.concurrency):
                        readers.start_soon(self._slot, queues[slot % len(queues)], queues, jobs)
                    task_status.started()
                    logger.info(
                        "worker %s taking fragment jobs of %s, %d at a time",
                        self.consumer,
                        ", ".join(self.queues),
                        self.concurrency,
                    )
                    await self._stopping.wait()
                    readers.cancel_scope.cancel()
                # Running jobs finish within the grace period, else are given back.
                jobs.cancel_scope.deadline = trio.current_time() + self.grace
        finally:
            for queue in queues:
                queue.close()
            with trio.CancelScope(shield=True):
                await store.aclose()

    async def _slot(self, first: JobQueue, queues: list[JobQueue], jobs: trio.Nursery) -> None:
        """One unit of concurrency: take a job (a dead worker's first), run it, again."""
        while True:
            try:
                taken = await first.reclaim(self.consumer, self.job_lease)
                queue = first
                if not taken:
                    for other in queues:
                        taken = await other.read(self.consumer, self.block)
                        queue = other
                        if taken:
                            break
            except StoreError as exc:
                logger.warning("cannot read jobs: %s; retrying in 1 s", exc)
                await trio.sleep(1)
                continue
            for entry, raw in taken:
                finished = trio.Event()
                jobs.start_soon(self._job, queue, entry, raw, finished)
                # Wait in the jobs' nursery, which outlives this slot's cancellation at stop.
                await finished.wait()

    async def _job(self, queue: JobQueue, entry: str, raw: bytes, finished: trio.Event) -> None:
        try:
            await self._run(queue, entry, raw)
        except StoreError as exc:
            logger.warning(
                "job %s of %s: lost Redis (%s); it will be redelivered", entry, queue.name, exc
            )
        finally:
            finished.set()

    async def _run(self, queue: JobQueue, entry: str, raw: bytes) -> None:
        accepted = await self.accept(queue, entry, raw)
        if accepted is not None:
            await self._compute(queue, entry, *accepted)

    async def accept(
        self, queue: JobQueue, entry: str, raw: bytes
    ) -> tuple[FragmentJob, FragmentRoute] | None:
        """Make a delivered entry ours to compute: a job of a route of this app, still the
        key's pending job, its backoff waited out, the key's lease re-entered.  None when it
        is not to be run now (dead-lettered, superseded, or left for later)."""
        consumer = self.consumer
        try:
            job = FragmentJob.decode(raw)
        except ValueError as exc:
            logger.error(
                "job %s of %s is not a fragment job (%s): dead-lettered", entry, queue.name, exc
            )
            bad = FragmentJob("", "", "", {}, "", "", "", [], [])
            reason = f"not a fragment job: {exc}"
            notice = Notice("", "abandoned", reason)
            await queue.finish(consumer, entry, bad, notice, reason, raw)
            return None
        route = self.workerless.remote_routes.get(job.endpoint)
        if route is None:
            await self.fail(queue, entry, job, f"no fragment {job.endpoint!r} here", final=True)
            return None
        store = queue.store
        marker = await store._call(store._client.get, queue.marker_key(job.key))
        if marker != job.token.encode():
            logger.info("job %s for %r was superseded; dropped", entry, job.key)
            notice = Notice(job.key, "abandoned", "superseded", token=job.token)
            await queue.finish(consumer, entry, job, notice)
            return None
        if job.not_before > time.time():
            await trio.sleep(job.not_before - time.time())
        lease = await store.acquire_lease(job.key, job.token, self.settings.lease)
        if not lease.acquired:
            logger.warning(
                "job %s: %r is leased to another computation; left for later", entry, job.key
            )
            return None
        deliveries = await queue.deliveries(entry)
        attempt = job.attempt + deliveries - 1  # runs a dead worker never finished count too
        if attempt >= self.max_attempts:
            await self.fail(queue, entry, job, "its workers died", final=True)
            return None
        return job, route

    async def _compute(
        self, queue: JobQueue, entry: str, job: FragmentJob, route: FragmentRoute
    ) -> None:
        store = queue.store
        settings = self.settings
        hard_limit = settings.hard_limit if route.hard_limit is None else route.hard_limit
        started = trio.current_time()
        error: Exception | None = None
        epoch = await store.epoch(job.key)  # an invalidation from now on keeps the result unstored
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep, queue, entry, job)
                with trio.move_on_after(hard_limit) as limit:
                    try:
                        response = await self._view(route, job)
                    except Exception as exc:  # the view's failure, not the keeper's
                        error = exc
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            if _cancelled(exc):  # stopping past the grace period (the nursery may group it)
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._give_back(queue, entry, job)
            raise
        if error is not None:
            reason = f"{type(error).__name__}: {error}"[:200]
            logger.error("job %s for %r failed: %s", entry, job.key, reason, exc_info=error)
            await self.fail(queue, entry, job, reason)
            return
        if limit.cancelled_caught:
            reason = f"ran past the hard limit of {hard_limit:g} s"
            await self.fail(queue, entry, job, reason, timed_out=True)
            return
        duration = trio.current_time() - started
        await self.deliver(queue, entry, job, route, response, duration, epoch)

    async def deliver(
        self,
        queue: JobQueue,
        entry: str,
        job: FragmentJob,
        route: FragmentRoute,
        response: CachedResponse,
        duration: float,
        epoch: int | None,
    ) -> None:
        """Store a job's response by the route's rules, acknowledge the job, wake its waiters.

        A private response is a failure (never shared); one the route does not cache is
        stored for 2 s, for the requests already waiting.
        """
        store = queue.store
        settings = self.settings
        if not route._shareable(frozenset(job.varied), response):
            await self.fail(queue, entry, job, "private response: not shared", final=True)
            return
        cacheable = route._cacheable(response)
        ttl = (settings.ttl if route.ttl is None else route.ttl) if cacheable else _HANDOFF_TTL
        stale = (settings.stale if route.stale is None else route.stale) if cacheable else 0.0
        if_error = settings.stale_if_error if route.stale_if_error is None else route.stale_if_error
        codec = self.workerless.cacher.codec
        envelope = Envelope.new(
            codec.encode(response), stale, if_error if cacheable else 0.0, duration
        )
        stored = await store.set(job.key, envelope.pack(), ttl + envelope.windows, epoch=epoch)
        notice = Notice(job.key, "stored", cached=stored, token=job.token)
        if not stored:  # invalidated while computing: the waiters' requests ask again
            notice = Notice(job.key, "abandoned", "invalidated while computing", token=job.token)
        await queue.finish(self.consumer, entry, job, notice)
        self.done += 1
        logger.info(
            "job %s: %r computed in %.3f s (status %d)", entry, job.key, duration, response.status
        )

    async def _view(self, route: FragmentRoute, job: FragmentJob) -> Any:
        """Run the route's view in a request context rebuilt from the job."""
        path = quote(job.path) + (f"?{job.query_string}" if job.query_string else "")
        context = self.app.test_request_context(
            path, method=job.method, headers=dict(job.headers), root_path=job.root_path
        )
        async with context:
            matched = context.request.view_args  # the app's converters, run again here
            view_args = matched if context.request.endpoint == job.endpoint else job.view_args
            return await route._compute(frozenset(job.varied), view_args or {})

    async def _keep(self, queue: JobQueue, entry: str, job: FragmentJob) -> None:
        """Renew the key's lease and keep the job ours while it runs."""
        period = min(self.settings.lease, self.job_lease) / 3
        while True:
            await trio.sleep(period)
            try:
                if not await queue.store.renew_lease(job.key, job.token, self.settings.lease):
                    logger.warning("lost the lease on %r while computing it", job.key)
                if not await queue.touch(self.consumer, entry):
                    logger.warning("job %s was taken over by another worker", entry)
            except StoreError as exc:  # the run goes on; storing its result will tell
                logger.warning("cannot renew job %s: %s", entry, exc)

    async def fail(
        self,
        queue: JobQueue,
        entry: str,
        job: FragmentJob,
        reason: str,
        *,
        final: bool = False,
        timed_out: bool = False,
    ) -> None:
        """Tell every waiter; retry with backoff, or dead-letter after the last attempt."""
        self.failed += 1
        attempt = job.attempt + 1
        notice = Notice(job.key, "timed_out" if timed_out else "failed", reason, token=job.token)
        if final or attempt >= self.max_attempts:
            logger.error(
                "job %s for %r failed %d time(s): dead-lettered (%s)",
                entry,
                job.key,
                attempt,
                reason,
            )
            await queue.finish(self.consumer, entry, job, notice, reason)
        else:
            delay = min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF)
            await queue.requeue(
                self.consumer, entry, job.again(attempt=attempt, not_before=time.time() + delay)
            )
            await queue.store.announce(notice, job.token)

    async def _give_back(self, queue: JobQueue, entry: str, job: FragmentJob) -> None:
        """Shutting down mid-job: the job goes back to the queue, the key's waiters look again."""
        logger.warning("job %s for %r given back at shutdown", entry, job.key)
        await queue.requeue(self.consumer, entry, job)
        await queue.store.announce(
            Notice(job.key, "abandoned", "worker stopping", token=job.token), job.token
        )


def _cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is trio's Cancelled, alone or as the only kind in a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_cancelled(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _routes(workerless: Workerless) -> list[Any]:
    return [route for route in workerless.remote_routes.values() if route.remote is not None]
