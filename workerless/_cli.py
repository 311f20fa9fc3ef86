"""The ``workerless`` command: ``workerless worker TARGET --queue NAME ...``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio
from quart_trio import QuartTrio

from ._worker import Worker

__all__ = ["main"]

logger = logging.getLogger("workerless.worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workerless")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="take jobs from queues over HTTP and run them",
        description="Run TARGET (module:Class, a workerless.Worker subclass) on the jobs of "
        "each --queue, taken from the queue server at --url with held requests.",
    )
    worker.add_argument("target", help="module:attribute, e.g. myapp.jobs:MailWorker")
    worker.add_argument("--queue", action="append", required=True, help="a queue (repeatable)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once per queue")
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
        "--grace", type=float, default=25.0, help="seconds running jobs get on SIGTERM"
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


async def _serve(worker: Worker) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(_stop_on_signal, worker)
        await worker.run()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(worker: Worker, *, task_status: trio.TaskStatus[None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for received in signals:
            logger.info("%s: stopping", signal.Signals(received).name)
            worker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workerless`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    target = _load(args.target)
    # What runs depends on what TARGET is: a Worker subclass today.
    if isinstance(target, type) and issubclass(target, Worker):
        return _run_worker_class(target, args)
    if isinstance(target, QuartTrio):
        raise SystemExit(
            f"workerless worker: {args.target!r} is an app; running its fragment jobs is not "
            "supported yet: give a workerless.Worker subclass"
        )
    raise SystemExit(
        f"workerless worker: {args.target!r} is a {type(target).__name__}, not a "
        "workerless.Worker subclass"
    )


def _run_worker_class(cls: type[Worker], args: argparse.Namespace) -> int:
    try:
        worker = cls(
            args.url,
            args.queue,
            concurrency=args.concurrency,
            token=args.token,
            wait=args.wait,
            grace=args.grace,
        )
    except ValueError as exc:
        raise SystemExit(f"workerless worker: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trio.run(_serve, worker)
    return 0
