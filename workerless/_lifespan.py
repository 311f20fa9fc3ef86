"""A lifespan for apps that never get one: a QuartTrio app mounted inside another ASGI app.

Starlette and FastAPI do not pass the lifespan to mounted apps, so a mounted QuartTrio app
never runs its start-up (no ``app.nursery``, no ``before_serving``): with workerless, every
fragment answered ``503 detail=not-running`` forever.  `LazyLifespan` runs the app's own
lifespan on its first request instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import trio

from ._asgi import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LazyLifespan"]

logger = logging.getLogger("workerless")

_START_WAIT = 30.0  # seconds a request waits for the app's start-up (a store's connect)
_RETRY_AFTER = 1.0  # seconds before a failed start-up is tried again


class LazyLifespan:
    """ASGI wrapper: passes everything through; if a request comes before any lifespan did,
    runs the app's lifespan start-up first, in a trio system task, and keeps it running.

    Requests arriving during that start-up wait for it (at most 30 s).  If it fails, they
    are answered 503 (a websocket is closed), the message is logged, and the next request
    one second later tries again.  The lifespan's shutdown is never sent: the system task is
    cancelled when the server's trio run ends (drain at SIGTERM still works, see
    `watch_hypercorn_shutdown`).  Needs trio; call it only under trio.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._seen = False  # a lifespan came from the server: nothing to do
        self._ready = False
        self._starting: trio.Event | None = None
        self._failed_at = -_RETRY_AFTER

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # The app's own coroutine when nothing is to be done: no frame of ours stays alive
        # while a request is held.
        if scope["type"] == "lifespan":
            self._seen = True
            return self.app(scope, receive, send)
        if self._seen or self._ready:
            return self.app(scope, receive, send)
        return self._first_request(scope, receive, send)

    async def ensure_started(self) -> bool:
        """True if the app's lifespan came from the server or its start-up here has completed;
        else start it (or wait for the start under way) and say whether it completed."""
        return self._seen or self._ready or await self._start()

    async def _first_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._start():
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            body = b"The server is starting or stopping.\n"
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"cache-status", b"workerless; detail=not-running"),
                (b"retry-after", b"1"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011, "reason": None})

    async def _start(self) -> bool:
        """Run the app's start-up unless it runs already; True once it has completed."""
        starting = self._starting
        if starting is None:
            if trio.current_time() - self._failed_at < _RETRY_AFTER:
                return False
            starting = self._starting = trio.Event()
            trio.lowlevel.spawn_system_task(self._run, starting)
        with trio.move_on_after(_START_WAIT):
            await starting.wait()
        return self._ready

    async def _run(self, started: trio.Event) -> None:
        """The app's lifespan, driven here: start-up, then nothing until the run ends."""
        sent: list[Message] = []

        async def receive() -> Message:
            if not sent and not started.is_set():
                return {"type": "lifespan.startup"}
            await trio.sleep_forever()  # no shutdown: the run's end cancels us
            raise AssertionError("unreachable")  # pragma: no cover

        async def send(message: Message) -> None:
            sent.append(message)
            self._ready = message["type"] == "lifespan.startup.complete"
            if not self._ready:
                logger.critical("workerless could not start: %s", message.get("message", ""))
            started.set()

        async def lifespan() -> None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
            try:
                await self.app(scope, receive, send)
            except Exception:
                logger.warning("the app has no lifespan: serving it without", exc_info=True)
            finally:
                # Returned or raised without a word: an app with no lifespan, nothing to wait for.
                self._ready = self._ready or not sent
                started.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lifespan)
                await started.wait()
                if not self._ready:
                    nursery.cancel_scope.cancel()
        finally:
            if not self._ready:
                self._failed_at = trio.current_time()
                self._starting = None
            started.set()
