"""The ``workerless`` command: ``workerless worker TARGET --queue NAME ...``.

TARGET is either a `workerless.Worker` subclass (jobs taken from the queue server over HTTP)
or a QuartTrio app with ``compute="worker"`` fragments (a `FragmentWorker` on its Redis store).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Protocol

import trio
from quart_trio import QuartTrio

from ._errors import ConfigurationError
from ._remote_worker import FragmentWorker
from ._worker import Worker

__all__ = ["main"]

logger = logging.getLogger("workerless.worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workerless")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="take jobs from queues and run them",
        description="TARGET is module:attribute. A workerless.Worker subclass runs on the jobs "
        "of each --queue, taken from the queue server at --url with held requests. A QuartTrio "
        "app computes the jobs of its compute='worker' fragments on those queues, read from "
        "its Redis store (WORKERLESS_STORE).",
    )
    worker.add_argument("target", help="module:attribute, e.g. myapp.jobs:MailWorker or myapp:app")
    worker.add_argument("--queue", action="append", required=True, help="a queue (repeatable)")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="jobs at once: per queue for a Worker class, in all for an app",
    )
    worker.add_argument(
        "--url",
        default=os.environ.get("WORKERLESS_QUEUE_SERVER", "http://127.0.0.1:8000"),
        help="the queue server (default: $WORKERLESS_QUEUE_SERVER or http://127.0.0.1:8000)",
    )
    worker.add_argument(
        "--token",
        default=os.environ.get("WORKERLESS_QUEUE_TOKEN"),
        help="the API's bearer token (default: $WORKERLESS_QUEUE_TOKEN)",
    )
    worker.add_argument("--wait", type=float, default=20.0, help="seconds one take is held")
    worker.add_argument(
        "--grace",
        type=float,
        help="seconds running jobs get on SIGTERM (default: 25, for an app WORKERLESS_GRACE)",
    )
    fragments = worker.add_argument_group("fragment jobs (TARGET is a QuartTrio app)")
    fragments.add_argument(
        "--job-lease", type=float, default=30.0, help="seconds before a dead worker's job moves"
    )
    fragments.add_argument(
        "--max-attempts", type=int, default=3, help="runs before a job is dead-lettered"
    )
    fragments.add_argument(
        "--backoff", type=float, default=1.0, help="seconds before the first retry (doubling)"
    )
    return parser


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"workerless worker: TARGET must be module:attribute, not {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"workerless worker: cannot load {target!r}: {exc}") from None
    return found


class _Runnable(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def _serve(worker: _Runnable) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(_stop_on_signal, worker)
        await worker.run()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(worker: _Runnable, *, task_status: trio.TaskStatus[None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for received in signals:
            logger.info("%s: stopping", signal.Signals(received).name)
            worker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workerless`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    target = _load(args.target)
    if isinstance(target, type) and issubclass(target, Worker):
        return _run(_queue_worker(target, args))
    if isinstance(target, QuartTrio):
        return _run(_fragment_worker(target, args))
    raise SystemExit(
        f"workerless worker: {args.target!r} is a {type(target).__name__}, not a "
        "workerless.Worker subclass or a QuartTrio app"
    )


def _queue_worker(cls: type[Worker], args: argparse.Namespace) -> Worker:
    try:
        return cls(
            args.url,
            args.queue,
            concurrency=args.concurrency,
            token=args.token,
            wait=args.wait,
            grace=25.0 if args.grace is None else args.grace,
        )
    except ValueError as exc:
        raise SystemExit(f"workerless worker: {exc}") from None


def _fragment_worker(app: QuartTrio, args: argparse.Namespace) -> FragmentWorker:
    try:
        return FragmentWorker(
            app,
            args.queue,
            concurrency=args.concurrency,
            job_lease=args.job_lease,
            max_attempts=args.max_attempts,
            backoff=args.backoff,
            grace=args.grace,
        )
    except (ConfigurationError, ValueError) as exc:
        raise SystemExit(f"workerless worker: {exc}") from None


def _run(worker: _Runnable) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trio.run(_serve, worker)
    return 0
