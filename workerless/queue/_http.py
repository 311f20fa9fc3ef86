"""The queue's HTTP API and page, as a Quart-Trio blueprint: presque's routes, with leases."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import trio
from quart import Blueprint, Response, current_app, render_template, request, url_for
from quart_trio import QuartTrio

from .._assets import STATIC_DIR, TEMPLATES_DIR
from .._errors import StoreError, StoreUnavailable
from .._remote_backlog import ENTRY_ID
from ._engine import QueueEngine
from ._job import PRIORITIES, Job, JobNotFound, LeaseLost, check_queue_name
from ._settings import QueueSettings

__all__ = ["Queues"]

logger = logging.getLogger("workerless.queue")
_PUBLIC_ENDPOINTS = frozenset({"page", "static"})  # the page holds no data: it asks the API


class _Refused(Exception):
    """An answer other than success: ``status`` and a message, sent as JSON."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class Queues:
    """The queue service: `blueprint` serves the API and page on `engine` (a QueueEngine).

    ``Queues(app, url_prefix="/jobs", **settings)`` mounts it in a QuartTrio app; settings are
    `QueueSettings` fields (keywords win over ``WORKERLESS_QUEUE_*`` variables of
    ``environ``).  Raises ConfigurationError without a Redis URL, or without a token unless
    ``open=True``.  The engine runs on the app's nursery while the app serves.
    """

    def __init__(
        self,
        app: QuartTrio | None = None,
        *,
        url_prefix: str = "",
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> None:
        self.settings = s = QueueSettings.resolve(settings, environ)
        self.engine = QueueEngine(
            s.url,
            prefix=s.prefix,
            lease=s.lease,
            max_attempts=s.max_attempts,
            backoff=s.backoff,
            max_backoff=s.max_backoff,
        )
        self.blueprint = self._blueprint()
        self._cancel = trio.CancelScope()
        if app is not None:
            app.register_blueprint(self.blueprint, url_prefix=url_prefix or None)

    def _blueprint(self) -> Blueprint:
        bp = Blueprint(
            "workerless_queue",
            __name__,
            static_folder=str(STATIC_DIR),
            static_url_path="/queue-static",  # beside the app's own /static
            template_folder=str(TEMPLATES_DIR),
        )
        bp.before_app_serving(self._start)
        bp.after_app_serving(self._stop)
        bp.before_request(self._authorize)
        bp.register_error_handler(_Refused, _refused)
        bp.register_error_handler(StoreError, _store_error)
        bp.register_error_handler(JobNotFound, _not_found)
        bp.register_error_handler(LeaseLost, _lease_lost)
        routes: list[tuple[str, str, Callable[..., Awaitable[Any]], list[str]]] = [
            ("/", "page", self.page, ["GET"]),
            ("/q/<queue>", "post", self.post, ["POST"]),
            ("/q/<queue>", "take", self.take, ["GET"]),
            ("/q/<queue>/<job_id>", "job", self.job, ["GET"]),
            ("/q/<queue>/<job_id>/<action>", "answer", self.answer, ["POST"]),
            ("/j/<queue>", "info", self.info, ["GET"]),
            ("/control/<queue>", "control", self.control, ["GET", "POST"]),
            ("/stats/", "stats", self.stats, ["GET"]),
            ("/dead/<queue>", "dead", self.dead, ["GET"]),
            ("/dead/<queue>/<job_id>", "dead_job", self.dead_job, ["POST", "DELETE"]),
        ]
        for rule, endpoint, view, methods in routes:
            bp.add_url_rule(rule, endpoint, view, methods=methods)
        return bp

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self.engine.open()
        except StoreUnavailable as exc:  # serve anyway: calls answer 503 until Redis is back
            logger.warning("queue: %s", exc)
        self._cancel = trio.CancelScope()  # one per serving: a scope is entered once
        nursery = current_app.nursery  # type: ignore[attr-defined]
        nursery.start_soon(self._run, self._cancel)

    async def _run(self, scope: trio.CancelScope) -> None:
        with scope:
            await self.engine.run()

    async def _stop(self) -> None:
        self._cancel.cancel()
        self.engine.close()

    async def _authorize(self) -> None:
        endpoint = (request.endpoint or "").rpartition(".")[2]
        if self.settings.open or endpoint in _PUBLIC_ENDPOINTS:
            return
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.settings.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            logger.info(
                "queue: refused %s %s without the right token", request.method, request.path
            )
            raise _Refused(401, "a bearer token is needed: Authorization: Bearer <token>")

    # -- routes ----------------------------------------------------------------------------

    async def page(self) -> str:
        return await render_template("queue/index.html", open=self.settings.open)

    async def post(self, queue: str) -> Response:
        """Add the JSON body as a job: 201 with its id and Location (200 for a uniq match)."""
        _queue(queue)
        body = await self._json_body()
        args = request.args
        priority = args.get("priority", "normal")
        if priority not in PRIORITIES:
            raise _Refused(400, f"priority must be one of {', '.join(PRIORITIES)}")
        delay = _number(args, "delay", 0.0, 10 * 365 * 86400.0)
        if "run_at" in args:
            run_at = _number(args, "run_at", 0.0, float("inf"))
            delay = max(0.0, run_at - await self.engine.now())
        uniq = args.get("uniq") or None
        if uniq is not None and len(uniq) > 200:
            raise _Refused(400, "uniq must be at most 200 characters")
        enqueued = await self.engine.enqueue(queue, body, priority=priority, delay=delay, uniq=uniq)
        location = url_for("workerless_queue.job", queue=queue, job_id=enqueued.id)
        payload = {"id": enqueued.id, "queue": queue, "added": enqueued.added}
        response = _json(payload, 201 if enqueued.added else 200)
        response.headers["Location"] = location
        return response

    async def take(self, queue: str) -> Response:
        """The next job under a lease (200), or 204 if none came within ``?wait=`` s."""
        _queue(queue)
        wait = _number(request.args, "wait", 0.0, self.settings.max_wait)
        job = await self.engine.take(queue, wait=wait)
        if job is None:
            return Response("", 204)
        return self._job_response(job)

    async def job(self, queue: str, job_id: str) -> Response:
        _queue(queue)
        status = await self.engine.status(queue, job_id)
        text = (
            f'{{"id": "{status.id}", "queue": {json.dumps(queue)}, "state": "{status.state}", '
            f'"priority": "{status.priority}", "attempts": {status.attempts}, '
            f'"error": {json.dumps(status.error)}, "created": {status.created}, '
            f'"job": {status.body}}}'
        )
        return Response(text, 200, content_type="application/json")

    async def answer(self, queue: str, job_id: str, action: str) -> Response:
        """done, fail (with a reason), release or touch a taken job; its ``?lease=`` token."""
        _queue(queue)
        if action not in ("done", "fail", "release", "touch"):
            raise _Refused(404, f"no action {action[:40]!r}: done, fail, release or touch")
        lease = request.args.get("lease", "")
        if not lease:
            raise _Refused(400, "?lease= (the lease token the take gave) is required")
        held = (queue, job_id, lease)
        if action == "fail":
            reason = await self._reason()
            outcome = await self.engine.fail(held, reason)
            return _json({"id": job_id, "outcome": outcome})
        await getattr(self.engine, action)(held)
        return _json({"id": job_id, "outcome": action})

    async def info(self, queue: str) -> Response:
        _queue(queue)
        return _json((await self.engine.info(queue)).as_dict())

    async def control(self, queue: str) -> Response:
        """GET the queue's status; POST ``{"status": "stop"}`` or ``{"status": "start"}``."""
        _queue(queue)
        if request.method == "POST":
            wanted = json.loads(await self._json_body())
            status = wanted.get("status") if isinstance(wanted, dict) else None
            if status not in ("start", "stop"):
                raise _Refused(400, 'the body must be {"status": "start"} or {"status": "stop"}')
            await (self.engine.start(queue) if status == "start" else self.engine.stop(queue))
        info = await self.engine.info(queue)
        return _json({"queue": queue, "status": "stopped" if info.stopped else "started"})

    async def stats(self) -> Response:
        """Every queue's figures and the totals; a queue whose figures cannot be read is
        listed with an ``error`` instead."""
        infos, broken = [], []
        for name in await self.engine.queues():
            try:
                infos.append(await self.engine.info(name))
            except StoreUnavailable:
                raise
            except StoreError as exc:  # one queue's keys hold foreign data: show the others
                logger.error("queue %s: %s", name, exc)
                broken.append({"queue": name, "error": "its Redis keys hold foreign data"})
        totals: dict[str, float] = {}
        for info in infos:
            for name in ("length", "pending", "delayed", "dead"):
                totals[name] = totals.get(name, 0) + getattr(info, name)
            for name, value in info.rates.items():
                totals[f"{name}_per_s"] = totals.get(f"{name}_per_s", 0) + value
        return _json({"queues": [i.as_dict() for i in infos] + broken, "totals": totals})

    async def dead(self, queue: str) -> Response:
        """The queue's dead jobs, then its dead fragment jobs (``"kind": "fragment"``)."""
        _queue(queue)
        jobs = await self.engine.dead_jobs(queue)
        found = [
            {"id": j.id, "kind": "job", "attempts": j.attempts, "error": j.error,
             "created": j.created, "job": j.body[:2000]}
            for j in jobs
        ]  # fmt: skip
        found += [job.as_dict() for job in await self.engine.dead_fragment_jobs(queue)]
        return _json({"queue": queue, "dead": found})

    async def dead_job(self, queue: str, job_id: str) -> Response:
        """POST: retry the dead job; DELETE: delete it.  A dead fragment job (an entry id) is
        only deleted: the next request for its key queues a new job."""
        _queue(queue)
        if ENTRY_ID.fullmatch(job_id):
            if request.method == "POST":
                raise _Refused(409, "a dead fragment job is not retried: request its URL again")
            await self.engine.delete_dead_fragment_job(queue, job_id)
            return _json({"id": job_id, "outcome": "deleted"})
        if request.method == "POST":
            await self.engine.retry_dead(queue, job_id)
            return _json({"id": job_id, "outcome": "retried"})
        await self.engine.delete_dead(queue, job_id)
        return _json({"id": job_id, "outcome": "deleted"})

    # -- helpers ---------------------------------------------------------------------------

    def _job_response(self, job: Job) -> Response:
        text = (
            f'{{"id": "{job.id}", "queue": {json.dumps(job.queue)}, '
            f'"priority": "{job.priority}", "attempt": {job.attempt}, "lease": "{job.lease}", '
            f'"lease_seconds": {self.settings.lease:g}, "job": {job.body}}}'
        )
        response = Response(text, 200, content_type="application/json")
        response.headers["Location"] = url_for(
            "workerless_queue.job", queue=job.queue, job_id=job.id
        )
        response.headers["Job-Id"] = job.id
        response.headers["Job-Lease"] = job.lease
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _json_body(self) -> str:
        """The request body as JSON text, checked: 413 over max_body, 400 if not JSON."""
        limit = self.settings.max_body
        declared = request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refused(413, f"the body is over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.body:
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"the body is over {limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(400, f"the body is not UTF-8 (byte {exc.start})") from None
        try:
            json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise _Refused(
                400,
                f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                line=exc.lineno,
                column=exc.colno,
                position=exc.pos,
            ) from None
        except ValueError as exc:
            raise _Refused(400, f"the body is not JSON: {exc}") from None
        return text

    async def _reason(self) -> str:
        raw = cast(bytes, await request.get_data(cache=False, as_text=False))
        text = raw[: 64 * 1024].decode("utf-8", "replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            return text.strip() or "failed"
        if isinstance(parsed, dict) and isinstance(parsed.get("reason"), str):
            return str(parsed["reason"])
        return text.strip() or "failed"


def _queue(name: str) -> None:
    try:
        check_queue_name(name)
    except ValueError as exc:
        raise _Refused(400, str(exc)) from None


def _number(args: Mapping[str, str], name: str, low: float, high: float) -> float:
    raw = args.get(name)
    if raw is None:
        return low
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise _Refused(400, f"?{name}= must be a number from {low:g} to {high:g}, not {raw[:40]!r}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, content_type="application/json")


async def _refused(error: _Refused) -> Response:
    return _json({"error": str(error), **error.extra}, error.status)


async def _store_error(error: StoreError) -> Response:
    logger.error("queue: %s %s: %s", request.method, request.path, error)
    response = _json({"error": "the queue's Redis is unavailable, try again later"}, 503)
    response.headers["Retry-After"] = "1"
    return response


async def _not_found(error: JobNotFound) -> Response:
    return _json({"error": str(error)}, 404)


async def _lease_lost(error: LeaseLost) -> Response:
    logger.info("queue: %s %s: %s", request.method, request.path, error)
    return _json({"error": str(error)}, 409)
