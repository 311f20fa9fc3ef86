"""Workerless: the Quart-Trio extension, and the fragment routes it serves."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import trio
from quart import Blueprint, Request, Response, current_app, request
from quart.ctx import RequestContext
from quart.globals import request_ctx
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ._answers import pending, plain, respond
from ._assets import STATIC_DIR, TEMPLATES_DIR
from ._cacher import Cacher
from ._checks import RequireTrio, check_app, stop_hypercorn_worker, watch_hypercorn_shutdown
from ._clients import adapt_for_client
from ._codecs import ResponseCodec
from ._config import Settings, check_keyword, configure_cacher
from ._errors import (
    ComputationFailed,
    ConfigurationError,
    Overloaded,
    StillComputing,
    StoreError,
    WorkerlessError,
)
from ._events import Event, EventName
from ._flight import Fetched
from ._http import app_url, request_header
from ._keys import bound_key, canonical_url
from ._lifespan import LazyLifespan
from ._log import fields
from ._metrics import CacherCollector, metrics_body, require_prometheus, statistics_body
from ._remote import RemoteCompute, check_queue_name
from ._response import CachedResponse, header, strong_etag
from ._rules import SharingRules, drop_variants, is_success, prefix_key, variant
from ._store import Store
from ._stream_state import current_page

__all__ = ["FragmentRoute", "Workerless"]

logger = logging.getLogger("workerless")

E = TypeVar("E", bound=Event)
P = ParamSpec("P")
R = TypeVar("R")
KeyFunction = Callable[[Request], str]
View = Callable[..., Any]


class Workerless:
    """Serves fragment routes on a QuartTrio app, computing each in-process at most once.

    Settings given here win over the ``WORKERLESS_*`` environment variables, read when the app
    starts (not at import); keywords are checked here, by the same rules (TypeError or
    ValueError naming the keyword).  The fragments' `Cacher` is ``workerless.cacher``: subscribe
    to its events at any time; its store and limits are set at start-up.
    """

    def __init__(
        self,
        app: QuartTrio | None = None,
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
        stale: float | None = None,
        stale_if_error: float | None = None,
        early_refresh: float | None = None,
        browser_ttl: float | None = None,
        metrics_path: str | None = None,
        stats_path: str | None = None,
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
            "stale": stale,
            "stale_if_error": stale_if_error,
            "early_refresh": early_refresh,
            "browser_ttl": browser_ttl,
            "metrics_path": metrics_path,
            "stats_path": stats_path,
        }
        Settings.resolve(self._keywords, {})  # a bad keyword fails here, where it was written
        if metrics_path is not None:
            require_prometheus()
        self._environ = environ
        self.settings = Settings()
        self.cacher: Cacher[CachedResponse] = Cacher(codec=ResponseCodec())
        self.app: QuartTrio | None = None
        # Endpoint -> rule of the fragment routes with their own key= function.
        self._custom_keys: dict[str, str] = {}
        # Endpoint -> the fragment routes computed by workers (compute="worker").
        self.remote_routes: dict[str, FragmentRoute] = {}
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._running = False
        self._exposed: set[str] = set()  # paths of the figures' endpoints already routed
        if app is not None:
            self.init_app(app)

    def init_app(self, app: QuartTrio) -> None:
        """Attach to ``app``: static files and templates, start-up and shutdown hooks.

        ``app`` must be a QuartTrio app (a TypeError says so otherwise); served under any
        loop but trio (hypercorn without ``--worker-class trio``) it refuses to start.
        """
        if self.app is not None:
            raise RuntimeError("this Workerless is already attached to an app")
        self.app = app = check_app(app)
        # A mounted app gets no lifespan from its parent: it then starts on its first request.
        app.asgi_app = RequireTrio(LazyLifespan(app.asgi_app))  # type: ignore[method-assign,arg-type]
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
        # The fragment macro asks it whether it is rendering a streamed page (see _page).
        app.jinja_env.globals["workerless_page"] = current_page
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
        stale: float | None = None,
        stale_if_error: float | None = None,
        browser_ttl: float | None = None,
        compute: str = "here",
        queue: str = "fragments",
        headers: Iterable[str] = (),
        **options: Any,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Register the decorated view as a GET/HEAD fragment route on ``rule``.

        The view runs at most once at a time per key (by default the path and the sorted
        query string; ``key(request)`` overrides it), in the background, with ``request``
        available as in any view.  Its response is cached for ``ttl`` seconds when
        ``cache_statuses(status)`` is true (2xx by default).  A request waits ``deadline``
        seconds at most, then gets 202 while the computation goes on; past ``hard_limit``
        the computation is cancelled and reported as 504.  For ``stale`` seconds after the
        ttl the old response is served at once while one refresh runs; for ``stale_if_error``
        seconds after that it is served if the computation fails.  ``browser_ttl`` lets the
        browser keep a fragment itself (``Cache-Control: private, max-age``); by default it
        revalidates with the fragment's ``ETag`` (a ``304``).  Unset values come from settings.

        ``compute="worker"`` runs the view on ``workerless worker`` processes reading the
        ``queue`` instead of here (see the README, "Worker-computed fragments"); ``headers``
        names the request headers such a view reads: they go with its job, and into the key.

        Arguments are checked here by the rules of the settings: a number out of its range
        is a ValueError, one that is not a number (``"5"``) or a ``key`` or
        ``cache_statuses`` that is not callable is a TypeError, each naming the argument.  A
        ``key`` returning anything but a str fails that request (a 500, logged with the rule).
        The decorated view is returned unchanged, with its signature.
        """
        if self.app is None:
            raise RuntimeError("call Workerless(app) or init_app(app) before registering fragments")
        app = self.app
        where = f" of fragment {rule!r}"
        numbers = {
            "ttl": ttl,
            "deadline": deadline,
            "hard_limit": hard_limit,
            "stale": stale,
            "stale_if_error": stale_if_error,
            "browser_ttl": browser_ttl,
        }
        for name, value in numbers.items():
            if value is not None:
                check_keyword(name, value, f"{name}={where}")
        for name, function in (("key", key), ("cache_statuses", cache_statuses)):
            if function is not None and not callable(function):
                raise TypeError(f"{name}={where} must be a function, not {function!r}")
        if compute not in ("here", "worker"):
            raise ValueError(f"compute={where} must be 'here' or 'worker', not {compute!r}")
        check_queue_name(queue, where)
        job_headers = frozenset(str(name).lower() for name in headers)

        def decorator(view: Callable[P, R]) -> Callable[P, R]:
            route = FragmentRoute(
                self,
                view,
                ttl=ttl,
                deadline=deadline,
                hard_limit=hard_limit,
                key=None if key is None else _checked_key(key, rule),
                cache_statuses=cache_statuses or is_success,
                stale=stale,
                stale_if_error=stale_if_error,
                browser_ttl=browser_ttl,
                rule=rule,
            )
            name = endpoint or view.__name__
            if compute == "worker":
                route.remote = RemoteCompute(route, name, queue, job_headers)
                route.vary = job_headers
                self.remote_routes[name] = route
            app.add_url_rule(rule, name, route.handle, methods=["GET", "HEAD"], **options)
            if key is not None:
                self._custom_keys[name] = rule
            return view

        return decorator

    async def invalidate(self, url: str) -> bool:
        """Drop the cached fragment for ``url`` (a path with its query, or a full URL).

        A route with its own ``key=`` function is not cached under its URL: for ``url`` on
        such a route this raises ValueError; use `invalidate_key` with the key it returns.
        """
        parts = urlsplit(url)
        rule = self._custom_key_rule(parts.path)
        if rule is not None:
            raise ValueError(
                f"invalidate({url!r}): fragment {rule!r} has its own key= function, so it is "
                "not cached under its URL; call invalidate_key() with the string key returns"
            )
        key = canonical_url(parts.path.encode("utf-8", "surrogatepass"), parts.query.encode())
        return await self._drop(bound_key(key))

    async def invalidate_key(self, key: str) -> bool:
        """Drop the cached fragment stored under ``key``: what a route's ``key=`` function returned.

        Return True if it was cached.  Through the store, so across processes with Redis.
        """
        return await self._drop(bound_key(key))

    async def _drop(self, key: str) -> bool:
        return await drop_variants(self.cacher, key)

    async def invalidate_prefix(self, prefix: str) -> int:
        """Drop every cached fragment whose URL starts with ``prefix``; return how many."""
        return await self.cacher.invalidate_prefix(prefix_key(prefix))

    def _custom_key_rule(self, path: str) -> str | None:
        """The rule of the fragment route with its own key= that ``path`` reaches, if any."""
        if not self._custom_keys or self.app is None:
            return None
        try:
            endpoint, _ = self.app.url_map.bind("localhost").match(unquote(path), method="GET")
        except HTTPException:  # not found, redirect, wrong method: not such a route
            return None
        return self._custom_keys.get(str(endpoint))

    def drain(self) -> None:
        """Answer every waiting request 202 at once; computations go on. See the README."""
        self.cacher.drain()

    # -- lifecycle -------------------------------------------------------------------------

    async def _startup(self) -> None:
        try:
            await self._start()
        except (WorkerlessError, ExceptionGroup) as exc:
            errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
            if not all(isinstance(error, WorkerlessError) for error in errors):
                raise
            # One line, no traceback: in a hypercorn worker the process ends here, so the
            # message is the last thing printed; elsewhere start-up fails with it, briefly.
            message = "workerless could not start: " + "; ".join(map(str, errors))
            stop_hypercorn_worker(message)
            raise errors[0].with_traceback(None) from None

    async def _start(self) -> None:
        settings = Settings.resolve(self._keywords, self._environ)
        self.settings = settings
        configure_cacher(self.cacher, settings)
        for route in self.remote_routes.values():
            assert route.remote is not None
            route.remote.start(self)
        assert self.app is not None
        # Quart cancels background tasks this long after shutdown begins: leave room for grace.
        timeout = self.app.config.get("BACKGROUND_TASK_SHUTDOWN_TIMEOUT")
        if timeout is not None and timeout < settings.grace + 1:
            self.app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.grace + 1
        self._expose_figures(settings)
        self._stop = trio.Event()
        self._stopped = trio.Event()
        await self.app.nursery.start(self._serve)
        logger.info("workerless serving with %r", self.cacher.store, extra=fields())

    def _expose_figures(self, settings: Settings) -> None:
        """Route the metrics and statistics endpoints the settings ask for (once per path)."""
        assert self.app is not None
        if settings.metrics_path:
            try:
                require_prometheus()
            except ImportError as exc:  # from the environment: stop start-up in one line
                raise ConfigurationError(f"WORKERLESS_METRICS_PATH: {exc}") from None
        for path, view in (
            (settings.metrics_path, self._serve_metrics),
            (settings.stats_path, self._serve_statistics),
        ):
            if path and path not in self._exposed:
                self._exposed.add(path)
                self.app.add_url_rule(path, f"workerless{path}", view, methods=["GET"])

    async def _serve_metrics(self) -> Response:
        body, content_type = metrics_body(CacherCollector(self.cacher))
        return Response(body, content_type=content_type, headers=_FIGURES_HEADERS)

    async def _serve_statistics(self) -> Response:
        body = statistics_body(self.cacher.statistics())
        return Response(body, content_type="application/json", headers=_FIGURES_HEADERS)

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.cacher, trio.open_nursery() as nursery:
                self._running = True
                self._nursery = nursery
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
        await watch_hypercorn_shutdown(self.cacher.drain)


_FIGURES_HEADERS = {"Cache-Control": "no-store"}


def _checked_key(key: KeyFunction, rule: str) -> KeyFunction:
    """``key``, failing clearly (TypeError naming the rule) when it returns a non-string."""

    def checked(req: Request) -> str:
        value = key(req)
        if not isinstance(value, str):
            raise TypeError(
                f"the key function of fragment {rule!r} returned "
                f"{type(value).__name__}, not str: {value!r}"
            )
        return value

    return checked


class FragmentRoute(SharingRules):
    """One fragment route: its key, limits, the view it runs in the background, and (from
    `SharingRules`) which of the view's responses are stored and shared."""

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
        stale: float | None = None,
        stale_if_error: float | None = None,
        browser_ttl: float | None = None,
        rule: str = "",
    ) -> None:
        self.workerless = workerless
        self.rule = rule  # the route's rule: the label of its events, figures and log lines
        self.view = view
        self.ttl = ttl
        self.deadline = deadline
        self.hard_limit = hard_limit
        self.key = key
        SharingRules.__init__(self, cache_statuses)
        self.stale = stale
        self.stale_if_error = stale_if_error
        self.browser_ttl = browser_ttl
        self._computes: dict[frozenset[str], Callable[[], Awaitable[CachedResponse]]] = {}
        self.remote: RemoteCompute | None = None  # set for compute="worker"

    def _compute_for(self, varied: frozenset[str]) -> Callable[[], Awaitable[CachedResponse]]:
        """`_compute` bound to ``varied``, made once per value of it (not once per request)."""
        bound = self._computes.get(varied)
        if bound is None:
            bound = self._computes[varied] = partial(self._compute, varied)
        return bound

    async def _compute(
        self, varied: frozenset[str], view_args: dict[str, Any] | None = None
    ) -> CachedResponse:
        """Run the view in the background and capture its response, with its ETag.

        The view gets ``view_args``, by default the request's own.  This runs in the
        computation's task, which trio started with a copy of the request task's context;
        working on a copy of that request context keeps ``request`` usable after the request
        is answered, and the copy is paid for on a miss only, never on a hit.  (What Quart's
        ``copy_current_request_context`` does, without its two frames nor routing the request
        again: this frame stays alive for as long as the computation runs.)
        """
        original: RequestContext = request_ctx._get_current_object()  # type: ignore[attr-defined]
        async with _ComputationContext(original):
            app = current_app
            if view_args is None:
                view_args = original.request.view_args or {}
            try:
                rv = await app.ensure_async(self.view)(**view_args)
            except HTTPException as exc:  # abort(404) and friends are responses, not failures
                rv = await app.handle_user_exception(exc)
            made = await app.make_response(rv)
            body = made.get_data(as_text=False)
            if inspect.isawaitable(body):  # Quart's responses are async; werkzeug's are not
                body = await body
        headers = list(made.headers.items())
        if made.status_code == 200 and header(headers, "etag") is None:
            headers.append(("ETag", strong_etag(body)))
        response = CachedResponse.build(made.status_code, headers, body)
        self.learn_vary(response, varied)
        return response

    async def handle(self, **view_args: Any) -> Response:
        """The Quart view: serve from the cache, wait on the computation, or answer 202; the
        answer adapted on the way out for htmx or Turbo if they ask.

        One frame, not two: it stays alive for as long as the request is held.  The view runs
        with the request's own ``view_args``, so Quart's copy of them is not kept.
        """
        del view_args
        workerless = self.workerless
        settings = workerless.settings
        if not workerless._running:
            text = "The server is starting or stopping."
            return await adapt_for_client(
                plain(503, text, settings, "workerless; detail=not-running")
            )
        varied = self.vary
        # The request itself, not its proxy: each attribute read through the proxy costs as
        # much as the rest of a hit's key.
        key = self._key_of(request._get_current_object(), varied)  # type: ignore[attr-defined]
        response: Response
        try:
            if self.remote is not None:  # compute="worker": a job, and a wait for its notice
                deadline = settings.deadline if self.deadline is None else self.deadline
                fetched = await self.remote.fetch(key, request.view_args or {}, varied, deadline)
            else:
                fetched = await workerless.cacher.fetch_result(
                    key,
                    self._compute_for(varied),
                    ttl=settings.ttl if self.ttl is None else self.ttl,
                    deadline=settings.deadline if self.deadline is None else self.deadline,
                    hard_limit=self.hard_limit,
                    cacheable=self._cacheable,
                    shareable=self._shareable_for(varied),
                    stale=self.stale,
                    stale_if_error=self.stale_if_error,
                    route=self.rule,
                )
        except StillComputing as exc:
            response = pending(exc, settings)
        except ComputationFailed as exc:
            status = 504 if exc.timed_out else 502
            text = "This fragment could not be computed."
            response = plain(status, text, settings, "workerless; fwd=miss; detail=error")
        except StoreError:  # compute="worker" with Redis down: no fallback here (see _remote)
            text = "The store cannot be reached now; try again shortly."
            response = plain(503, text, settings, "workerless; fwd=miss; detail=store-down")
        except Overloaded:
            text = "Too many fragments are being computed; try again shortly."
            response = plain(503, text, settings, "workerless; fwd=miss; detail=overloaded")
        else:
            browser_ttl = settings.browser_ttl if self.browser_ttl is None else self.browser_ttl
            response = respond(fetched, browser_ttl)
        return await adapt_for_client(response)

    def page_key(self) -> str:
        """The cache key of the current request on this route: what `handle` would use."""
        return self._key_of(request._get_current_object(), self.vary)  # type: ignore[attr-defined]

    def _key_of(self, req: Request, varied: frozenset[str]) -> str:
        """``req``'s cache key: its URL (or the route's ``key=``), its variant if need be."""
        scope = req.scope
        key = bound_key(self.key(req) if self.key else app_url(scope, req.path))
        if varied or request_header(scope, "authorization") is not None:
            # Most routes vary on nothing and most requests carry no credentials: skip it.
            key = variant(key, varied, partial(request_header, scope))
        return key

    async def fetch_for_page(
        self, key: str, view_args: dict[str, Any], deadline: float
    ) -> Fetched[CachedResponse]:
        """Fetch this route's response under ``key`` (from `page_key`) as `handle` does: same
        cacher, limits and single flight, waiting ``deadline`` seconds at most.

        For a streamed page, in a request context for the fragment's URL.  Raises what
        `Cacher.fetch_result` raises (StillComputing, ComputationFailed, Overloaded), and
        StoreError for a worker-computed route while Redis is down.
        """
        settings = self.workerless.settings
        varied = self.vary
        if self.remote is not None:
            return await self.remote.fetch(key, view_args, varied, deadline)
        return await self.workerless.cacher.fetch_result(
            key,
            partial(self._compute, varied, view_args),
            ttl=settings.ttl if self.ttl is None else self.ttl,
            deadline=deadline,
            hard_limit=self.hard_limit,
            cacheable=self._cacheable,
            shareable=self._shareable_for(varied),
            stale=self.stale,
            stale_if_error=self.stale_if_error,
            route=self.rule,
        )



class _ComputationContext(RequestContext):
    """A copy of a request's context for its computation, which may outlive the request.

    Pushed and popped (torn down) on its own, as Quart's ``RequestContext.copy()`` is, but
    sharing the request's URL adapter, session and routing instead of making them again: a held
    request carries one of these, thousands at once.
    """

    def __init__(self, original: RequestContext) -> None:
        vars(self).update(vars(original))  # whatever Quart keeps per context, shared
        self.preserved = False  # what is this context's own: its push, pop and callbacks
        self._cv_tokens = []
        self._after_request_functions = []

    async def _push(self) -> None:
        """Nothing to open: the session and the routing are the request's own, done already."""
