"""The ready queue app: the blueprint at the root of a QuartTrio app of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from quart_trio import QuartTrio

from .._checks import RequireTrio
from .._errors import ConfigurationError
from ._http import Queues

__all__ = ["ReadyApp", "create_app"]

Message = dict[str, Any]


def create_app(environ: Mapping[str, str] | None = None) -> QuartTrio:
    """A QuartTrio app serving the queue API and page at ``/``, configured from ``environ``
    (default: the process environment); ConfigurationError if a setting cannot work."""
    app = QuartTrio(__name__, static_folder=None)
    Queues(app, environ=environ)
    app.asgi_app = RequireTrio(app.asgi_app)  # type: ignore[method-assign]
    return app


class ReadyApp:
    """The ASGI app ``workerless.queue:app``: built from the environment on its first call,
    so importing workerless.queue needs no settings; a bad setting fails the server's start
    with the ConfigurationError that names the variable."""

    def __init__(self) -> None:
        self._app: QuartTrio | None = None

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if self._app is None:
            try:
                self._app = create_app()
            except ConfigurationError as exc:
                if scope["type"] != "lifespan":
                    raise
                # Refuse to start, naming the setting, instead of serving without lifespan.
                await receive()
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self._app(scope, receive, send)  # type: ignore[arg-type]
