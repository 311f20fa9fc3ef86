"""The ready queue app: the blueprint at the root of a QuartTrio app of its own."""

from __future__ import annotations

from collections.abc import Mapping

from quart_trio import QuartTrio

from .._checks import RequireTrio
from ._http import Queues

__all__ = ["create_app"]


def create_app(environ: Mapping[str, str] | None = None) -> QuartTrio:
    """A QuartTrio app serving the queue API and page at ``/``, configured from ``environ``
    (default: the process environment); ConfigurationError if a setting cannot work."""
    app = QuartTrio(__name__, static_folder=None)
    Queues(app, environ=environ)
    app.asgi_app = RequireTrio(app.asgi_app)  # type: ignore[method-assign]
    return app
