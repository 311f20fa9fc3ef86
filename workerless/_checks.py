"""Clear, early refusals of the common deployment mistakes: wrong worker class, wrong app class."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    LifespanStartupFailedEvent,
    Scope,
    WebsocketCloseEvent,
)
from quart import Quart
from quart_trio import QuartTrio

from ._log import fields

__all__ = [
    "WRONG_WORKER",
    "RequireTrio",
    "check_app",
    "stop_hypercorn_worker",
    "watch_hypercorn_shutdown",
]

logger = logging.getLogger("workerless")

WRONG_WORKER = (
    "workerless needs trio, but this server runs another event loop: "
    "start it with `hypercorn --worker-class trio module:app`"
)

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


def check_app(app: object) -> QuartTrio:
    """``app`` itself if it is a QuartTrio app; else a TypeError that names QuartTrio."""
    if isinstance(app, QuartTrio):
        return app
    kind = "an asyncio Quart app" if isinstance(app, Quart) else f"a {type(app).__name__}"
    raise TypeError(
        f"Workerless needs a QuartTrio app, not {kind}: "
        "`from quart_trio import QuartTrio; app = QuartTrio(__name__)`"
    )


class RequireTrio:
    """ASGI middleware: passes everything through under trio; under any other loop, refuses.

    Under asyncio (hypercorn's default worker class) the app's lifespan start-up fails with
    `WRONG_WORKER`, and should a server call the app without a lifespan, every HTTP request
    gets a 500 whose body says the same; the message is logged once per process.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._logged = False

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if trio.lowlevel.in_trio_run():
            await self.app(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                stop_hypercorn_worker(WRONG_WORKER)
                await send(
                    LifespanStartupFailedEvent(type="lifespan.startup.failed", message=WRONG_WORKER)
                )
            return
        if not self._logged:
            self._logged = True
            logger.critical(WRONG_WORKER, extra=fields())
        if scope["type"] == "http":
            body = (WRONG_WORKER + "\n").encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ]
            await send(
                HTTPResponseStartEvent(type="http.response.start", status=500, headers=headers)
            )
            await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))
        elif scope["type"] == "websocket":
            await send(WebsocketCloseEvent(type="websocket.close", code=1011, reason=None))


def stop_hypercorn_worker(message: str) -> None:
    """Log ``message`` as CRITICAL; in a hypercorn worker process, then end that process.

    A start-up failure would otherwise leave the worker with a long traceback printed after
    the message (hypercorn's lifespan error, re-raised through trio and multiprocessing).
    Exiting with status 1 keeps the message the last thing printed and stops the whole server
    (hypercorn's master then exits too, with status 0).  Elsewhere (in-process serving,
    tests) this only logs, and the caller fails start-up the ordinary way.
    """
    logger.critical(message, extra=fields())
    if not _in_hypercorn_worker():
        return
    for handler in [*logging.getLogger().handlers, *logger.handlers]:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


async def watch_hypercorn_shutdown(drain: Callable[[], None]) -> None:
    """Call ``drain()`` the moment this hypercorn worker process is told to stop (within 0.1 s).

    Hypercorn tells the app nothing until in-flight requests are done or cut at its
    graceful_timeout.  Its worker processes poll a shutdown event they receive as an argument;
    watching the same event lets held requests be answered 202 in time.  Outside a hypercorn
    worker process (in-process serving) this returns at once.
    """
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    event: Any = kwargs.get("shutdown_event") if isinstance(kwargs, dict) else None
    if not callable(getattr(event, "is_set", None)):
        return
    while not event.is_set():  # noqa: ASYNC110 - a process-shared flag: polling is the only way
        await trio.sleep(0.1)
    logger.info("server shutting down: answering waiting requests 202")
    drain()


def _in_hypercorn_worker() -> bool:
    # Hypercorn starts each worker process with its config and a shared shutdown event.
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    return isinstance(kwargs, dict) and {"config", "shutdown_event"} <= kwargs.keys()
