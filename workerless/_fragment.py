"""Workerless: the Quart-Trio extension, and the fragment routes it serves."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import multiprocessing
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, unquote_to_bytes, urlsplit

import trio
from quart import Blueprint, Quart, Response, copy_current_request_context, current_app, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from ._assets import STATIC_DIR, TEMPLATES_DIR
from ._cacher import Cacher, Fetched
from ._codecs import ResponseCodec
from ._config import Settings, store_from_url
from ._errors import ComputationFailed, Overloaded, StillComputing
from ._events import Event, EventName
from ._keys import _SAFE_PATH, bound_key, canonical_url
from ._response import CachedResponse, is_private, vary_names
from ._store import Store

__all__ = ["FragmentRoute", "Workerless"]

logger = logging.getLogger("workerless")

E = TypeVar("E", bound=Event)
KeyFunction = Callable[[Any], str]
View = Callable[..., Any]


class Workerless:
    """Serves fragment routes on a QuartTrio app, computing each in-process at most once.

    Settings given here win over the ``WORKERLESS_*`` environment variables, read when the app
    starts (not at import).  The fragments' `Cacher` is ``workerless.cacher``: subscribe to its
    events at any time; its store and limits are set at start-up.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        store: Store | str | None = None,
        ttl: float | None = None,
        deadline: float | None = None,
        hard_limit: float | None = None,
        lease: float | None = None,
        grace: float | None = None,
        retry_after: int | None = None,
        prefix: str | None = None,
        near_ttl: float | None = None,
        max_computations: int | None = None,
        max_value_bytes: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._keywords: dict[str, Any] = {
            "store": store,
            "ttl": ttl,
            "deadline": deadline,
            "hard_limit": hard_limit,
            "lease": lease,
            "grace": grace,
            "retry_after": retry_after,
            "prefix": prefix,
            "near_ttl": near_ttl,
            "max_computations": max_computations,
            "max_value_bytes": max_value_bytes,
        }
        self._environ = environ
        self.settings = Settings()
        self.cacher: Cacher[CachedResponse] = Cacher(codec=ResponseCodec())
        self.app: Quart | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._running = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Attach to ``app``: static files and templates, start-up and shutdown hooks."""
        if self.app is not None:
            raise RuntimeError("this Workerless is already attached to an app")
        self.app = app
        app.extensions["workerless"] = self
        if "workerless" not in app.blueprints:
            app.register_blueprint(
                Blueprint(
                    "workerless",
                    __name__,
                    url_prefix="/workerless",
                    static_folder=str(STATIC_DIR),
                    static_url_path="/static",
                    template_folder=str(TEMPLATES_DIR),
                )
            )
        app.before_serving(self._startup)
        app.after_serving(self._shutdown)

    def on(
        self, event: type[E] | EventName, callback: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Subscribe to the fragment cacher's events by type (``on(Hit, ...)``); see Cacher.on."""
        return self.cacher.on(event, callback)

    def fragment(
        self,
        rule: str,
        *,
        ttl: float | None = None,
        deadline: float | None = None,
        hard_limit: float | None = None,
        key: KeyFunction | None = None,
        cache_statuses: Callable[[int], bool] | None = None,
        endpoint: str | None = None,
        **options: Any,
    ) -> Callable[[View], View]:
        """Register the decorated view as a GET/HEAD fragment route on ``rule``.

        The view runs at most once at a time per key (by default the path and the sorted
        query string; ``key(request)`` overrides it), in the background, with ``request``
        available as in any view.  Its response is cached for ``ttl`` seconds when
        ``cache_statuses(status)`` is true (2xx by default).  A request waits ``deadline``
        seconds at most, then gets 202 while the computation goes on; past ``hard_limit``
        the computation is cancelled and reported as 504.  Unset limits come from the settings.
        """
        if self.app is None:
            raise RuntimeError("call Workerless(app) or init_app(app) before registering fragments")
        app = self.app

        def decorator(view: View) -> View:
            route = FragmentRoute(
                self,
                view,
                ttl=ttl,
                deadline=deadline,
                hard_limit=hard_limit,
                key=key,
                cache_statuses=cache_statuses or _is_success,
            )
            app.add_url_rule(
                rule,
                endpoint or view.__name__,
                route.handle,
                methods=["GET", "HEAD"],
                **options,
            )
            return view

        return decorator

    async def invalidate(self, url: str) -> bool:
        """Drop the cached fragment for ``url`` (a path with its query, or a full URL)."""
        parts = urlsplit(url)
        key = canonical_url(parts.path.encode("utf-8", "surrogatepass"), parts.query.encode())
        return await self.cacher.invalidate(bound_key(key))

    async def invalidate_prefix(self, prefix: str) -> int:
        """Drop every cached fragment whose URL starts with ``prefix``; return how many."""
        return await self.cacher.invalidate_prefix(
            quote(unquote_to_bytes(prefix), safe=_SAFE_PATH + "?=&")
        )

    def drain(self) -> None:
        """Answer every waiting request 202 at once; computations go on. See the README."""
        self.cacher.drain()

    # -- lifecycle -------------------------------------------------------------------------

    async def _startup(self) -> None:
        settings = Settings.resolve(self._keywords, self._environ)
        self.settings = settings
        store = settings.store
        cacher = self.cacher
        cacher.store = (
            store
            if isinstance(store, Store)
            else store_from_url(
                store,
                prefix=settings.prefix,
                near_ttl=settings.near_ttl,
                max_value_bytes=settings.max_value_bytes,
            )
        )
        cacher.ttl = settings.ttl
        cacher.hard_limit = settings.hard_limit
        cacher.lease = settings.lease
        cacher.grace = settings.grace
        cacher.max_computations = settings.max_computations
        assert self.app is not None
        # Quart cancels background tasks this long after shutdown begins: leave room for grace.
        timeout = self.app.config.get("BACKGROUND_TASK_SHUTDOWN_TIMEOUT")
        if timeout is not None and timeout < settings.grace + 1:
            self.app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.grace + 1
        self._stop = trio.Event()
        self._stopped = trio.Event()
        await self.app.nursery.start(self._serve)  # type: ignore[attr-defined]
        logger.info("workerless serving with %r", cacher.store)

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.cacher, trio.open_nursery() as nursery:
                self._running = True
                nursery.start_soon(self._watch_hypercorn_shutdown)
                task_status.started()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
            self._stopped.set()

    async def _shutdown(self) -> None:
        # Hypercorn cancels the app's background tasks as soon as this hook returns, so hold it
        # while the cacher closes: it drains, gives computations their grace, then cancels.
        self._stop.set()
        with trio.move_on_after(self.settings.grace + 5):
            await self._stopped.wait()

    async def _watch_hypercorn_shutdown(self) -> None:
        # Hypercorn tells the app nothing until in-flight requests are done or cut at its
        # graceful_timeout.  Its worker processes poll a shutdown event they receive as an
        # argument; we watch the same event, so held requests are answered 202 in time.
        kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
        event: Any = kwargs.get("shutdown_event") if isinstance(kwargs, dict) else None
        if not callable(getattr(event, "is_set", None)):
            return
        while not event.is_set():  # noqa: ASYNC110 - a process-shared flag: polling is the only way
            await trio.sleep(0.1)
        logger.info("server shutting down: answering waiting requests 202")
        self.cacher.drain()


def _is_success(status: int) -> bool:
    return 200 <= status < 300


class FragmentRoute:
    """One fragment route: its key, limits, and the view it runs in the background."""

    def __init__(
        self,
        workerless: Workerless,
        view: View,
        *,
        ttl: float | None,
        deadline: float | None,
        hard_limit: float | None,
        key: KeyFunction | None,
        cache_statuses: Callable[[int], bool],
    ) -> None:
        self.workerless = workerless
        self.view = view
        self.ttl = ttl
        self.deadline = deadline
        self.hard_limit = hard_limit
        self.key = key
        self.cache_statuses = cache_statuses

        # Request headers the view's responses were seen to vary on (``Vary``), learned from
        # its responses: they become part of the key from then on.
        self.vary: frozenset[str] = frozenset()

    def _cacheable(self, response: CachedResponse) -> bool:
        return self.cache_statuses(response.status)

    def _shareable(self, varied: frozenset[str], response: CachedResponse) -> bool:
        """Whether a response computed under a key covering ``varied`` may serve others."""
        names = vary_names(response.headers)
        return not is_private(response.headers) and "*" not in names and names <= varied

    async def _compute(self, view_args: dict[str, Any], varied: frozenset[str]) -> CachedResponse:
        response = await _render(self.view, view_args)
        names = vary_names(response.headers) - varied - {"*"}
        if names:
            learned = self.vary | names
            # A view varying on more than a few headers is per-request: leave it uncached.
            self.vary = learned if len(learned) <= _MAX_VARY else self.vary
        return response

    async def handle(self, **view_args: Any) -> Response:
        """The Quart view: serve from the cache, wait on the computation, or answer 202."""
        workerless = self.workerless
        settings = workerless.settings
        if not workerless._running:
            return _plain(
                503,
                "The server is starting or stopping.",
                settings,
                "workerless; detail=not-running",
            )
        varied = self.vary
        key = _variant(bound_key(self.key(request) if self.key else _request_url()), varied)
        try:
            fetched = await workerless.cacher.fetch_result(
                key,
                partial(self._compute, view_args, varied),
                ttl=settings.ttl if self.ttl is None else self.ttl,
                deadline=settings.deadline if self.deadline is None else self.deadline,
                hard_limit=self.hard_limit,
                cacheable=self._cacheable,
                shareable=partial(self._shareable, varied),
            )
        except StillComputing as exc:
            return _pending(exc, settings)
        except ComputationFailed as exc:
            status = 504 if exc.timed_out else 502
            text = "This fragment could not be computed."
            return _plain(status, text, settings, "workerless; fwd=miss; detail=error")
        except Overloaded:
            text = "Too many fragments are being computed; try again shortly."
            return _plain(503, text, settings, "workerless; fwd=miss; detail=overloaded")
        return _respond(fetched)


_MAX_VARY = 8
VARIANT_MARK = "#v="


def _variant(key: str, varied: frozenset[str]) -> str:
    """``key`` for this request's values of the headers the route varies on.

    A request with credentials (``Authorization``) always gets a key of its own: a shared
    answer is never served to it, nor its answer to anyone else (RFC 9111 section 3.5).
    """
    names = sorted(varied)
    credentials = request.headers.get("Authorization")
    if credentials is not None and "authorization" not in varied:
        names.append("authorization")
    if not names:
        return key
    values = [[name, request.headers.get(name, "")] for name in names]
    digest = hashlib.sha256(json.dumps(values).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{key}{VARIANT_MARK}{digest[:32]}"


async def _render(view: View, view_args: dict[str, Any]) -> CachedResponse:
    """Run a fragment view in the background and capture its response.

    This runs in the computation's task, which trio started with a copy of the request task's
    context; working on a copy of that request context keeps ``request`` usable after the
    request is answered, and the copy is paid for on a miss only, never on a hit.
    """

    @copy_current_request_context
    async def run() -> CachedResponse:
        app = current_app
        try:
            rv = await app.ensure_async(view)(**view_args)
        except HTTPException as exc:  # abort(404) and friends are responses, not failures
            rv = await app.handle_user_exception(exc)
        response = await app.make_response(rv)
        body = response.get_data(as_text=False)
        if inspect.isawaitable(body):  # Quart's responses are async; werkzeug's (abort) are not
            body = await body
        return CachedResponse.build(response.status_code, list(response.headers.items()), body)

    return await run()  # type: ignore[no-any-return]


def _request_url() -> str:
    """The current request's path and query, canonical (the default key; always ASCII)."""
    scope = request.scope
    return canonical_url(
        scope.get("raw_path") or request.path.encode("utf-8", "surrogatepass"),
        scope.get("query_string", b""),
    )


def _respond(fetched: Fetched[CachedResponse]) -> Response:
    cached = fetched.value
    response = current_app.response_class(
        cached.body, status=cached.status, headers=Headers(list(cached.headers))
    )
    if fetched.source == "hit":
        ttl = "" if fetched.ttl is None else f"; ttl={int(fetched.ttl)}"
        status = f"workerless; hit{ttl}"
    else:
        status = "workerless; fwd=miss"
        if cached.status != 200:
            status += f"; fwd-status={cached.status}"
        if fetched.source == "collapsed":
            status += "; collapsed"
        if fetched.stored:
            status += "; stored"
        if not fetched.store_available:
            status += "; detail=store-unavailable"
    response.headers["Cache-Status"] = status
    return response


def _pending(exc: StillComputing, settings: Settings) -> Response:
    response = current_app.response_class(b"", status=202)
    response.headers.clear()
    response.headers["Location"] = _request_url()
    response.headers["Retry-After"] = str(settings.retry_after)
    response.headers["Cache-Control"] = "no-store"
    detail = "shutting-down" if exc.shutting_down else "pending"
    collapsed = "; collapsed" if exc.collapsed else ""
    response.headers["Cache-Status"] = f"workerless; fwd=miss{collapsed}; detail={detail}"
    return response


def _plain(status: int, text: str, settings: Settings, cache_status: str) -> Response:
    response = current_app.response_class(text + "\n", status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cache-Status"] = cache_status
    if status == 503:
        response.headers["Retry-After"] = str(settings.retry_after)
    return response
