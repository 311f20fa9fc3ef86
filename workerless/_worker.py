"""Worker: takes jobs from the queue's HTTP API with held requests and runs ``work`` on each."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from .queue._job import Job, check_queue_name

if TYPE_CHECKING:
    import httpx

__all__ = ["Worker"]

logger = logging.getLogger("workerless.worker")
_PAUSE = 1.0  # s between two attempts when the server is unreachable or refuses


class Worker:
    """Subclass it and define ``async def work(self, job)``; optionally ``fail(job, error)``.

    `run` keeps ``concurrency`` held takes (``GET /q/<queue>?wait=``) open per queue at
    ``url``, runs `work` on each job it gets, then acknowledges it (``done``); a job whose
    `work` raises is reported failed (the server retries it with backoff, then dead-letters
    it) after `fail` ran.  The lease of a running job is renewed every third of its length,
    so long jobs are not handed to another worker.  `stop` (the CLI calls it on SIGTERM)
    ends the held takes at once, lets running jobs finish for ``grace`` s, then cancels
    them and releases their jobs to the queue untried.
    """

    def __init__(
        self,
        url: str,
        queues: Sequence[str] | str,
        *,
        concurrency: int = 1,
        token: str | None = None,
        wait: float = 20.0,
        grace: float = 25.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        for name in self.queues:
            check_queue_name(name)
        if not self.queues or concurrency < 1 or wait <= 0 or grace < 0:
            raise ValueError("a worker needs a queue, concurrency >= 1, wait > 0, grace >= 0")
        self.concurrency = concurrency
        self.token = token
        self.wait = wait
        self.grace = grace
        self._stopping = trio.Event()
        self._takes: set[trio.CancelScope] = set()
        self._works: set[trio.CancelScope] = set()
        self._idle = trio.Event()

    async def work(self, job: Job) -> None:
        """Do the job (``job.json()`` is its body); raise to report it failed."""
        raise NotImplementedError(f"{type(self).__name__} must define async def work(self, job)")

    async def fail(self, job: Job, error: BaseException) -> None:
        """Called when `work` raised, before the failure is reported; logs by default."""
        logger.warning("job %s of queue %s failed: %r", job.id, job.queue, error)

    def stop(self) -> None:
        """Stop taking jobs now; finish running ones within ``grace`` s, then release them."""
        self._stopping.set()
        for scope in list(self._takes):
            scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take and run jobs until `stop` was called and running jobs ended (or cancelled)."""
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("the worker needs httpx: pip install 'workerless[worker]'") from exc
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = httpx.Timeout(10.0, read=self.wait + 10.0)
        async with (
            httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout) as client,
            trio.open_nursery() as nursery,
        ):
            for queue in self.queues:
                for _ in range(self.concurrency):
                    nursery.start_soon(self._slot, client, queue)
            nursery.start_soon(self._shutdown)
            task_status.started()

    async def _shutdown(self) -> None:
        await self._stopping.wait()
        if self._works:
            logger.info("stopping: %d job(s) running, %g s to finish", len(self._works), self.grace)
            with trio.move_on_after(self.grace):
                await self._idle.wait()
        for scope in list(self._works):
            scope.cancel()

    async def _slot(self, client: httpx.AsyncClient, queue: str) -> None:
        while not self._stopping.is_set():
            job, lease_seconds = await self._take(client, queue)
            if job is not None:
                await self._handle(client, job, lease_seconds)

    async def _take(self, client: httpx.AsyncClient, queue: str) -> tuple[Job | None, float]:
        import httpx

        with trio.CancelScope() as scope:
            self._takes.add(scope)
            try:
                if self._stopping.is_set():
                    return None, 0.0
                response = await client.get(f"/q/{queue}", params={"wait": self.wait})
            except httpx.HTTPError as exc:
                logger.warning("cannot take from %s/q/%s: %r", self.url, queue, exc)
                await trio.sleep(_PAUSE)
                return None, 0.0
            finally:
                self._takes.discard(scope)
        if scope.cancelled_caught or response.status_code == 204:
            return None, 0.0
        if response.status_code != 200:
            logger.error("taking from queue %s: %d %s", queue, response.status_code, response.text)
            await trio.sleep(_PAUSE)
            return None, 0.0
        data: dict[str, Any] = response.json()
        raw = response.text
        # The body exactly as posted: the text after the envelope's "job" key.
        body = raw[raw.index('"job": ') + len('"job": ') : raw.rindex("}")]
        job = Job(queue, data["id"], body, data["priority"], data["attempt"], data["lease"])
        return job, float(data.get("lease_seconds", 30.0))

    async def _handle(self, client: httpx.AsyncClient, job: Job, lease_seconds: float) -> None:
        error: BaseException | None = None
        with trio.CancelScope() as scope:
            self._works.add(scope)
            if self._idle.is_set():
                self._idle = trio.Event()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._renew, client, job, lease_seconds)
                    try:
                        await self.work(job)
                    except Exception as exc:
                        error = exc
                    nursery.cancel_scope.cancel()
            finally:
                self._works.discard(scope)
                if not self._works:
                    self._idle.set()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            if scope.cancelled_caught:
                logger.info("job %s of queue %s stopped unfinished: released", job.id, job.queue)
                await self._answer(client, job, "release")
            elif error is not None:
                await self.fail(job, error)
                await self._answer(client, job, "fail", {"reason": f"{error!r}"[:2000]})
            else:
                logger.info("job %s of queue %s done", job.id, job.queue)
                await self._answer(client, job, "done")

    async def _renew(self, client: httpx.AsyncClient, job: Job, lease_seconds: float) -> None:
        while True:
            await trio.sleep(max(0.05, lease_seconds / 3))
            await self._answer(client, job, "touch")

    async def _answer(
        self, client: httpx.AsyncClient, job: Job, action: str, body: Any = None
    ) -> None:
        import httpx

        url = f"/q/{job.queue}/{job.id}/{action}"
        for attempt in range(3):
            try:
                response = await client.post(url, params={"lease": job.lease}, json=body)
            except httpx.HTTPError as exc:
                logger.warning("%s of job %s: %r (attempt %d)", action, job.id, exc, attempt + 1)
                await trio.sleep(_PAUSE * math.pow(2, attempt))
                continue
            if response.status_code == 409:
                logger.warning(
                    "job %s: lease lost (it ran too long): another worker has it", job.id
                )
            elif response.status_code != 200:
                logger.error(
                    "%s of job %s: %d %s", action, job.id, response.status_code, response.text
                )
            return
        logger.error(
            "%s of job %s never reached the server: its lease will run out", action, job.id
        )
