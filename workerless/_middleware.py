"""WorkerlessMiddleware: the fragment routes' contract in front of any ASGI app.

rack-worker's idea (`use Rack::Worker` in front of any Rack app) without its flaws: GET and
HEAD requests on the configured paths are served from the cache; a miss runs the request
through the wrapped app in the background, and its status, headers and body are cached.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from ._answers import fetched_answer, pending_answer, plain_answer
from ._asgi import (
    STATIC_PREFIX,
    ASGIApp,
    Capture,
    Message,
    Receive,
    Scope,
    Send,
    first_of,
    has_credentials,
    header_lookup,
    path_below_root,
    send_answer,
    send_asset,
)
from ._cacher import Cacher
from ._checks import RequireTrio, stop_hypercorn_worker, watch_hypercorn_shutdown
from ._codecs import ResponseCodec
from ._config import Settings, check_keyword, configure_cacher
from ._errors import ComputationFailed, Overloaded, StillComputing, WorkerlessError
from ._events import Event, EventName
from ._http import app_url, location
from ._keys import bound_key, canonical_url
from ._lifespan import LazyLifespan
from ._response import CachedResponse, header, strong_etag
from ._rules import SharingRules, drop_variants, is_success, prefix_key, variant
from ._store import Store

__all__ = ["CachedRoute", "WorkerlessMiddleware"]

logger = logging.getLogger("workerless")

E = TypeVar("E", bound=Event)
ScopeKey = Callable[[Scope], str]

# A response bigger than max_value_bytes is passed through; its key is remembered this long
# (at most this many keys), so the next requests go straight to the app.
_TOO_LARGE_KEYS = 1024
# What a computation returns when the app's body passed the limit: never stored nor shared
# (no-store), so the request that started it runs the request through the app itself.
_TOO_LARGE = CachedResponse(200, (("Cache-Control", "no-store"),), b"")


@dataclass(frozen=True, slots=True)
class CachedRoute:
    """A path pattern the middleware caches, with settings of its own.

    ``pattern`` is a glob (``"/fragment/*"``; ``*`` matches ``/`` too) or a compiled regular
    expression that must match the whole path (below the mount point).  Unset settings come
    from the middleware's.  ``key(scope)`` replaces the default key (the path plus the sorted
    query string) and receives the request's ASGI scope; it must return a str.
    """

    pattern: str | re.Pattern[str]
    ttl: float | None = None
    deadline: float | None = None
    hard_limit: float | None = None
    key: ScopeKey | None = None
    cache_statuses: Callable[[int], bool] | None = None
    stale: float | None = None
    stale_if_error: float | None = None
    browser_ttl: float | None = None


class _Route(SharingRules):
    """A `CachedRoute`, checked, with its sharing rules; ``key`` and ``cache_statuses`` fall
    back to the middleware's, the numbers (None) to the settings, read at each request."""

    def __init__(
        self,
        route: CachedRoute,
        key: ScopeKey | None,
        cache_statuses: Callable[[int], bool] | None,
    ) -> None:
        pattern = route.pattern
        self.name = pattern if isinstance(pattern, str) else pattern.pattern
        where = f" of route {self.name!r}"
        for name in ("ttl", "deadline", "hard_limit", "stale", "stale_if_error", "browser_ttl"):
            value = getattr(route, name)
            if value is not None:
                check_keyword(name, value, f"{name}={where}")
        for name in ("key", "cache_statuses"):
            function = getattr(route, name)
            if function is not None and not callable(function):
                raise TypeError(f"{name}={where} must be a function, not {function!r}")
        self.regex = re.compile(fnmatch.translate(pattern)) if isinstance(pattern, str) else pattern
        self.ttl = route.ttl
        self.deadline = route.deadline
        self.hard_limit = route.hard_limit
        self.key = route.key or key
        self.stale = route.stale
        self.stale_if_error = route.stale_if_error
        self.browser_ttl = route.browser_ttl
        SharingRules.__init__(self, route.cache_statuses or cache_statuses or is_success)

    def key_of(self, scope: Scope, path: str) -> str:
        """The request's key before its variant: the key function's, or path plus query."""
        if self.key is None:
            return app_url(scope, path)
        value = self.key(scope)
        if not isinstance(value, str):
            raise TypeError(
                f"the key function of route {self.name!r} returned "
                f"{type(value).__name__}, not str: {value!r}"
            )
        return value


class WorkerlessMiddleware:
    """Serves GET and HEAD requests on ``routes`` of any ASGI app from a cache, computing
    each response in the background at most once at a time per key (per fleet with Redis).

    ``routes`` are glob patterns, compiled regular expressions or `CachedRoute` values; every
    other request (other paths, other methods, websockets, the lifespan) reaches ``app``
    untouched.  On a miss the request runs through ``app`` in the background with a copy of
    its scope; the status, headers and body it sends are stored (2xx only, unless
    ``cache_statuses`` says otherwise) and handed to every request waiting on that key, with
    the HTTP contract of fragment routes (202 past the deadline, 502/504 never cached,
    ``Cache-Status``).  A request with ``Cookie`` or ``Authorization`` on a route without its
    own ``key`` is passed through uncached, since its answer may be that user's.  A body
    bigger than ``max_value_bytes`` is passed through uncached too.

    The Cacher starts with the ASGI lifespan when the server sends one, else on the first
    request (a mounted app).  Settings and their checks are those of `Workerless`, with the
    same ``WORKERLESS_*`` variables; it needs trio (``hypercorn --worker-class trio``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Iterable[str | re.Pattern[str] | CachedRoute],
        key: ScopeKey | None = None,
        cache_statuses: Callable[[int], bool] | None = None,
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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"WorkerlessMiddleware needs an ASGI app, not {app!r}")
        if isinstance(routes, str | re.Pattern | CachedRoute):
            routes = [routes]
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
        }
        Settings.resolve(self._keywords, {})  # a bad keyword fails here, where it was written
        for name, function in (("key", key), ("cache_statuses", cache_statuses)):
            if function is not None and not callable(function):
                raise TypeError(f"{name}= must be a function, not {function!r}")
        self._routes = [
            _Route(
                route if isinstance(route, CachedRoute) else CachedRoute(route),
                key,
                cache_statuses,
            )
            for route in routes
        ]
        if not self._routes:
            raise ValueError("WorkerlessMiddleware needs at least one route pattern")
        self.app = app
        self._environ = environ
        self.settings = Settings()
        self.cacher: Cacher[CachedResponse] = Cacher(codec=ResponseCodec())
        self._refusal = RequireTrio(app)  # type: ignore[arg-type]
        self._running = False
        self._lifespan_seen = False
        # Without a lifespan (a mounted app), the cacher's own one runs at the first request.
        self._lazy = LazyLifespan(self._own_lifespan)
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._too_large: OrderedDict[str, float] = OrderedDict()

    # -- public ----------------------------------------------------------------------------

    def on(
        self, event: type[E] | EventName, callback: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Subscribe to the middleware cacher's events by type (``on(Hit, ...)``)."""
        return self.cacher.on(event, callback)

    def drain(self) -> None:
        """Answer every waiting request 202 at once; computations go on."""
        self.cacher.drain()

    async def invalidate(self, url: str) -> bool:
        """Drop the cached response for ``url`` (a path with its query, or a full URL).

        A route with its own ``key`` function is not cached under its URL: for ``url`` on
        such a route this raises ValueError; use `invalidate_key` with the key it returns.
        """
        parts = urlsplit(url)
        route = self._route_of(parts.path)
        if route is not None and route.key is not None:
            raise ValueError(
                f"invalidate({url!r}): route {route.name!r} has its own key= function, so it "
                "is not cached under its URL; call invalidate_key() with the string key returns"
            )
        path = parts.path.encode("utf-8", "surrogatepass")
        return await drop_variants(
            self.cacher, bound_key(canonical_url(path, parts.query.encode()))
        )

    async def invalidate_key(self, key: str) -> bool:
        """Drop the response stored under ``key`` (what a route's ``key`` function returned)."""
        return await drop_variants(self.cacher, bound_key(key))

    async def invalidate_prefix(self, prefix: str) -> int:
        """Drop every cached response whose URL starts with ``prefix``; return how many."""
        return await self.cacher.invalidate_prefix(prefix_key(prefix))

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not trio.lowlevel.in_trio_run():
            await self._refusal(scope, receive, send)  # type: ignore[arg-type]
            return
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = path_below_root(scope)
        if path.startswith(STATIC_PREFIX) and await send_asset(path, scope, send):
            return
        route = self._route_of(path)
        if route is None or (route.key is None and has_credentials(scope)):
            # A Cookie or Authorization may make the answer that user's: never shared.
            await self.app(scope, receive, send)
            return
        await self._serve_request(route, path, scope, receive, send)

    def _route_of(self, path: str) -> _Route | None:
        for route in self._routes:
            if route.regex.fullmatch(path):
                return route
        return None

    async def _serve_request(
        self, route: _Route, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        head = scope["method"] == "HEAD"
        if not self._running and (self._lifespan_seen or not await self._lazy.ensure_started()):
            text = "The server is starting or stopping."
            answer = plain_answer(
                503, text, self.settings.retry_after, "workerless; detail=not-running"
            )
            await send_answer(send, answer, head)
            return
        settings = self.settings
        headers = header_lookup(scope)
        varied = route.vary
        try:
            key = variant(bound_key(route.key_of(scope, path)), varied, headers)
        except Exception:
            logger.exception("the key of %s failed", scope.get("path"))
            answer = plain_answer(
                500, "This request has no key.", settings.retry_after, "workerless; detail=error"
            )
            await send_answer(send, answer, head)
            return
        if self._known_too_large(key):
            await self.app(scope, receive, send)
            return
        try:
            fetched = await self.cacher.fetch_result(
                key,
                partial(self._compute, scope, varied, route),
                ttl=settings.ttl if route.ttl is None else route.ttl,
                deadline=settings.deadline if route.deadline is None else route.deadline,
                hard_limit=route.hard_limit,
                cacheable=route._cacheable,
                shareable=route._shareable_for(varied),
                stale=route.stale,
                stale_if_error=route.stale_if_error,
            )
        except StillComputing as exc:
            where = location(scope, app_url(scope, path))
            answer = pending_answer(exc, settings.retry_after, where)
        except ComputationFailed as exc:
            status = 504 if exc.timed_out else 502
            text = "This page could not be computed."
            answer = plain_answer(
                status, text, settings.retry_after, "workerless; fwd=miss; detail=error"
            )
        except Overloaded:
            text = "Too many pages are being computed; try again shortly."
            answer = plain_answer(
                503, text, settings.retry_after, "workerless; fwd=miss; detail=overloaded"
            )
        else:
            if fetched.value is _TOO_LARGE:
                self._remember_too_large(key)
                await self.app(scope, receive, send)
                return
            browser_ttl = settings.browser_ttl if route.browser_ttl is None else route.browser_ttl
            answer = fetched_answer(fetched, browser_ttl, headers)
        await send_answer(send, answer, head)

    async def _compute(self, scope: Scope, varied: frozenset[str], route: _Route) -> CachedResponse:
        """Run the request through the app with a copy of its scope; capture what it sends.

        A HEAD computes the whole response (a GET serves it later).  The app runs in the
        middleware's own nursery, so what it does after its response is complete (a
        Starlette background task) does not hold the waiters; if this computation is
        cancelled (hard limit, shutdown) before the response is complete, so is the app.
        """
        assert self._nursery is not None
        child = {**scope, "method": "GET"}
        limit = self.settings.max_value_bytes
        capture = Capture(limit)
        done = trio.Event()
        failure: list[BaseException] = []
        app_scope = trio.CancelScope()

        async def run() -> None:
            with app_scope:
                try:
                    await self.app(child, capture.receive, capture.send)
                except Exception as exc:
                    failure.append(exc)
            done.set()

        self._nursery.start_soon(run)
        try:
            await first_of(done, capture.complete)
            if capture.status >= 500 and not capture.overflow:
                # Starlette answers 500 and then re-raises: a raising app is a failed
                # computation (502), as a raising view is.
                await done.wait()
        finally:
            if capture.overflow or not capture.complete.is_set():
                app_scope.cancel()
        if capture.overflow:
            return _TOO_LARGE
        if failure and (capture.status >= 500 or not capture.complete.is_set()):
            raise failure[0]
        if not capture.complete.is_set():
            raise RuntimeError(f"{route.name}: the app returned without a complete response")
        response_headers = capture.headers
        body = b"".join(capture.body)
        if capture.status == 200 and header(response_headers, "etag") is None:
            response_headers.append(("ETag", strong_etag(body)))
        response = CachedResponse.build(capture.status, response_headers, body)
        route.learn_vary(response, varied)
        return response

    def _known_too_large(self, key: str) -> bool:
        expiry = self._too_large.get(key)
        if expiry is None:
            return False
        if expiry > trio.current_time():
            return True
        del self._too_large[key]
        return False

    def _remember_too_large(self, key: str) -> None:
        self._too_large[key] = trio.current_time() + self.settings.ttl
        self._too_large.move_to_end(key)
        while len(self._too_large) > _TOO_LARGE_KEYS:
            self._too_large.popitem(last=False)

    # -- lifecycle -------------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan to the app; start the cacher at its start-up, stop it first at its
        shutdown (drain, grace), in a nursery that lives as long as the lifespan.

        Should the app end its lifespan early (an app without lifespan support raises or
        returns), the cacher stops with it and starts again on the next request.
        """
        shut_down = False
        try:
            async with trio.open_nursery() as nursery:

                async def relayed() -> Message:
                    nonlocal shut_down
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await self._start_in_lifespan(nursery)
                        self._lifespan_seen = True
                    elif message["type"] == "lifespan.shutdown":
                        shut_down = True
                        await self._shutdown()
                    return message

                try:
                    await self.app(scope, relayed, send)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            if not shut_down:
                self._lifespan_seen = False

    async def _start_in_lifespan(self, nursery: trio.Nursery) -> None:
        try:
            await self._start(nursery)
        except (WorkerlessError, ExceptionGroup) as exc:
            errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
            if not all(isinstance(error, WorkerlessError) for error in errors):
                raise
            message = "workerless could not start: " + "; ".join(map(str, errors))
            stop_hypercorn_worker(message)  # in a hypercorn worker: the last line printed
            raise errors[0].with_traceback(None) from None

    async def _start(self, nursery: trio.Nursery) -> None:
        settings = Settings.resolve(self._keywords, self._environ)
        self.settings = settings
        configure_cacher(self.cacher, settings)
        self._stop = trio.Event()
        self._stopped = trio.Event()
        await nursery.start(self._serve)
        logger.info("workerless middleware serving with %r", self.cacher.store)

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # The apps' runs (see _compute) outlive the cacher: at shutdown it drains, gives the
        # computations their grace and cancels them first; what still runs is cancelled after.
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    async with self.cacher:
                        self._running = True
                        nursery.start_soon(watch_hypercorn_shutdown, self.cacher.drain)
                        task_status.started()
                        await self._stop.wait()
                finally:
                    self._running = False
                    nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._stopped.set()

    async def _shutdown(self) -> None:
        self._stop.set()
        with trio.move_on_after(self.settings.grace + 5):
            await self._stopped.wait()

    async def _own_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The cacher's lifespan alone, for `LazyLifespan` to run when none came."""
        await receive()  # lifespan.startup
        async with trio.open_nursery() as nursery:
            try:
                await self._start(nursery)
            except (WorkerlessError, ExceptionGroup) as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown, or cancelled when the run ends
            await self._shutdown()
