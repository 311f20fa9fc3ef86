"""Worker-computed fragments over HTTP: workers in any language take jobs and post results.

``app.register_blueprint(fragment_jobs(workerless, token=...), url_prefix="/fragment-jobs")``
serves, behind ``Authorization: Bearer <token>``:

- ``GET /<queue>?wait=N``: the next job (held up to N s, 30 at most; 204 if none came), as
  ``{"id": ..., "job": {...}}``; the job carries ``url`` and ``headers`` to compute it with;
- ``POST /<queue>/<id>/result`` with ``{"status": 200, "headers": [["Content-Type",
  "text/html"]], "body": "..."}`` (or ``"body_base64"``): validated like a stored entry (a bad
  status, a CR/LF in a header, ``Set-Cookie``, ``private``: 400 with the reason), then stored
  and pushed to every waiting request exactly as a `FragmentWorker`'s result; 204;
- ``POST /<queue>/<id>/fail`` with ``{"reason": "..."}``: 502 to the waiters, retried later.

Their backlog and dead letters are shown by the queue service (``/j/<queue>``, ``/stats/``,
``/dead/<queue>``, its page): see `workerless.queue`.

A job taken here must be answered within the job lease (30 s), else it goes to another worker.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
from typing import Any

import trio
from quart import Blueprint, Response, request

from ._codecs import ResponseCodec
from ._errors import ConfigurationError, StoreError
from ._fragment import Workerless
from ._redis import RedisStore
from ._remote import FragmentJob, JobQueue
from ._remote_backlog import ENTRY_ID
from ._remote_worker import FragmentWorker
from ._response import CachedResponse

__all__ = ["fragment_jobs"]

logger = logging.getLogger("workerless")

_MAX_WAIT = 30.0
_MAX_RESULT_BYTES = 8 * 1024 * 1024
_CONSUMER = "http"  # every HTTP worker shares it: a job is answered by id, on any web process


def fragment_jobs(
    workerless: Workerless, *, token: str | None = None, open_api: bool = False
) -> Blueprint:
    """The blueprint above; ``token`` defaults to ``WORKERLESS_QUEUE_TOKEN``.  Without a token
    it refuses to be built (ConfigurationError) unless ``open_api`` says the API is open."""
    secret = token if token is not None else os.environ.get("WORKERLESS_QUEUE_TOKEN", "")
    if not secret and not open_api:
        raise ConfigurationError(
            "fragment_jobs needs a token (token= or WORKERLESS_QUEUE_TOKEN), or open_api=True"
        )
    blueprint = Blueprint("workerless_fragment_jobs", __name__)
    api = _Api(workerless, secret)
    blueprint.before_request(api.authorize)
    blueprint.add_url_rule("/<queue>", "take", api.take, methods=["GET"])
    blueprint.add_url_rule("/<queue>/<entry>/result", "result", api.result, methods=["POST"])
    blueprint.add_url_rule("/<queue>/<entry>/fail", "fail", api.fail, methods=["POST"])
    return blueprint


class _Api:
    def __init__(self, workerless: Workerless, secret: str) -> None:
        self.workerless = workerless
        self.secret = secret
        self._worker: FragmentWorker | None = None
        self._queues: dict[str, JobQueue] = {}

    async def authorize(self) -> Response | None:
        if not self.secret:
            return None
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.secret}".encode()):
            return None
        return _json(401, {"error": "a bearer token is required"})

    def _queue(self, name: str) -> tuple[FragmentWorker, JobQueue] | Response:
        workerless = self.workerless
        names = {
            route.remote.queue_name for route in workerless.remote_routes.values() if route.remote
        }
        if name not in names:
            return _json(404, {"error": f"no worker-computed fragment uses queue {name!r}"})
        store = workerless.cacher.store
        if not isinstance(store, RedisStore):
            return _json(503, {"error": "worker-computed fragments need a Redis store"})
        if self._worker is None:
            assert workerless.app is not None
            self._worker = FragmentWorker(
                workerless.app, sorted(names), environ=workerless._environ, consumer=_CONSUMER
            )
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = JobQueue(store, name)
        return self._worker, queue

    async def take(self, queue: str) -> Response:
        found = self._queue(queue)
        if isinstance(found, Response):
            return found
        worker, jobs = found
        try:
            wait = min(max(float(request.args.get("wait", "0")), 0.0), _MAX_WAIT)
        except ValueError:
            return _json(400, {"error": "wait must be a number of seconds"})
        try:
            await jobs.ensure_group()
            taken = await jobs.reclaim(_CONSUMER, worker.job_lease)
            if not taken and wait > 0:
                taken = await jobs.read(_CONSUMER, wait)
            for entry, raw in taken:
                accepted = await worker.accept(jobs, entry, raw)
                if accepted is not None:
                    job, _ = accepted
                    return _json(200, {"id": entry, "job": json.loads(job.encode())})
        except StoreError as exc:
            logger.warning("fragment jobs of %r over HTTP: %s", queue, exc)
            return _json(503, {"error": str(exc)})
        return Response(b"", status=204)

    async def _held_job(self, jobs: JobQueue, entry: str) -> FragmentJob | Response:
        """The job taken here as ``entry``; else the answer saying why not (404, 409)."""
        if ENTRY_ID.fullmatch(entry) is None:
            return _json(404, {"error": f"{entry!r} is not a job id"})
        found: Any = await jobs.store._call(
            lambda: jobs.store._client.xrange(jobs.stream, entry, entry)
        )
        fields = found[0][1] if found else None
        if not fields or b"job" not in fields:
            return _json(404, {"error": f"no job {entry!r} in this queue"})
        try:
            job = FragmentJob.decode(fields[b"job"])
        except ValueError as exc:
            return _json(404, {"error": f"{entry!r} is not a fragment job: {exc}"})
        # An answer counts only while the job is still the one taken here.
        if not await jobs.touch(_CONSUMER, entry):
            return _json(409, {"error": "this job was taken over by another worker"})
        return job

    async def result(self, queue: str, entry: str) -> Response:
        found = self._queue(queue)
        if isinstance(found, Response):
            return found
        worker, jobs = found
        body = await request.get_data(cache=False)
        if len(body) > _MAX_RESULT_BYTES:
            return _json(413, {"error": f"over {_MAX_RESULT_BYTES} bytes"})
        try:
            response = _response(json.loads(body))
        except ValueError as exc:
            return _json(400, {"error": f"not a valid response: {exc}"})
        try:
            job = await self._held_job(jobs, entry)
            if isinstance(job, Response):
                return job
            route = self.workerless.remote_routes.get(job.endpoint)
            if route is None:
                return _json(404, {"error": f"no fragment {job.endpoint!r} here"})
            epoch = await jobs.store.epoch(job.key)
            with trio.CancelScope(shield=True):
                await worker.deliver(jobs, entry, job, route, response, 0.0, epoch)
        except StoreError as exc:
            logger.warning("fragment jobs of %r over HTTP: %s", queue, exc)
            return _json(503, {"error": str(exc)})
        return Response(b"", status=204)

    async def fail(self, queue: str, entry: str) -> Response:
        found = self._queue(queue)
        if isinstance(found, Response):
            return found
        worker, jobs = found
        body = await request.get_data(cache=False)
        if len(body) > _MAX_RESULT_BYTES:
            return _json(413, {"error": f"over {_MAX_RESULT_BYTES} bytes"})
        try:
            data = json.loads(body or b"{}")
            reason = str(data.get("reason", "failed")) if isinstance(data, dict) else "failed"
        except ValueError as exc:
            return _json(400, {"error": f"not JSON: {exc}"})
        try:
            job = await self._held_job(jobs, entry)
            if isinstance(job, Response):
                return job
            with trio.CancelScope(shield=True):
                await worker.fail(jobs, entry, job, reason[:200])
        except StoreError as exc:
            logger.warning("fragment jobs of %r over HTTP: %s", queue, exc)
            return _json(503, {"error": str(exc)})
        return Response(b"", status=204)


def _response(data: Any) -> CachedResponse:
    """The posted result as a response, validated as a stored entry is (ValueError if not)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with status, headers and body")
    status, headers = data.get("status"), data.get("headers", [])
    if type(status) is not int:
        raise ValueError("status must be an integer")
    if not isinstance(headers, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        for pair in headers
    ):
        raise ValueError('headers must be [["Name", "value"], ...]')
    if "body_base64" in data:
        try:
            body = base64.b64decode(str(data["body_base64"]), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"body_base64: {exc}") from None
    else:
        body = str(data.get("body", "")).encode()
    codec = ResponseCodec()
    built = CachedResponse.build(status, [(name, value) for name, value in headers], body)
    checked = codec.decode(codec.encode(built))
    dropped = {name.lower() for name, _ in built.headers} - {n.lower() for n, _ in checked.headers}
    if dropped:
        raise ValueError(f"headers a fragment may not carry: {', '.join(sorted(dropped))}")
    return checked


def _json(status: int, data: Any) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")
