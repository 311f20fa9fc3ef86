"""WorkerlessMiddleware: the fragment routes' contract in front of any ASGI app.

rack-worker's idea (`use Rack::Worker` in front of any Rack app) without its flaws: GET and
HEAD requests on the configured paths are served from the cache; a miss runs the request
through the wrapped app in the background, and its status, headers and body are cached.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from ._answers import Answer, fetched_answer, pending_answer, plain_answer
from ._asgi import (
    STATIC_PREFIX,
    ASGIApp,
    Capture,
    Message,
    Receive,
    RecentKeys,
    Scope,
    Send,
    first_of,
    has_credentials,
    header_lookup,
    own_url,
    path_below_root,
    send_answer,
    send_asset,
)
from ._cacher import Cacher
from ._checks import RequireTrio, stop_hypercorn_worker, watch_hypercorn_shutdown
from ._clients import adapt_answer
from ._codecs import ResponseCodec
from ._config import Settings, configure_cacher
from ._errors import ComputationFailed, Overloaded, StillComputing, WorkerlessError
from ._events import Event, EventName
from ._flight import Fetched
from ._http import app_url, location
from ._keys import bound_key, canonical_url
from ._lifespan import LazyLifespan
from ._response import CachedResponse, header, strong_etag
from ._routes import CachedRoute, Route, ScopeKey
from ._rules import drop_variants, prefix_key, variant
from ._store import Store

__all__ = ["CachedRoute", "WorkerlessMiddleware"]

logger = logging.getLogger("workerless")

E = TypeVar("E", bound=Event)

# What a computation returns when the app's body passed the limit: never stored nor shared
# (no-store), so the request that started it runs the request through the app itself.
_TOO_LARGE = CachedResponse(200, (("Cache-Control", "no-store"),), b"")


class WorkerlessMiddleware:
    """Serves GET and HEAD requests on ``routes`` of any ASGI app from a cache, computing
    each response in the background at most once at a time per key (per fleet with Redis).

    ``routes`` are glob patterns, compiled regular expressions or `CachedRoute` values; every
    other request (other paths, other methods, websockets, the lifespan) reaches ``app``
    untouched.  On a miss the request runs through ``app`` in the background with a copy of
    its scope; the status, headers and body it sends are stored (2xx only, unless
    ``cache_statuses`` says otherwise) and handed to every request waiting on that key, with
    the HTTP contract of fragment routes (202 past the deadline, 502/504 never cached,
    ``Cache-Status``), adapted for htmx and Turbo as fragment routes' answers are.  A request
    with ``Cookie`` or ``Authorization`` on a route without its own ``key`` is served a stored
    response only if it says ``Cache-Control: public``, and its own response is stored for
    everyone only if it says ``public``; otherwise it runs through the app for that user
    alone.  A body bigger than ``max_value_bytes`` is passed through uncached.

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
            Route(
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
        # A response bigger than max_value_bytes is passed through; its key is remembered for
        # ttl seconds, so the next requests go straight to the app.
        self._too_large = RecentKeys()

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
        if route is None:
            await self.app(scope, receive, send)
            return
        await self._serve_request(route, path, scope, receive, send)

    def _route_of(self, path: str) -> Route | None:
        for route in self._routes:
            if route.regex.fullmatch(path):
                return route
        return None

    async def _serve_request(
        self, route: Route, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        head = scope["method"] == "HEAD"
        headers = header_lookup(scope)
        settings = self.settings

        async def answer_with(answer: Answer) -> None:
            where = partial(own_url, scope, path)
            await send_answer(send, adapt_answer(answer, headers, where), head)

        if not self._running and (self._lifespan_seen or not await self._lazy.ensure_started()):
            text = "The server is starting or stopping."
            await answer_with(
                plain_answer(503, text, self.settings.retry_after, "workerless; detail=not-running")
            )
            return
        # A Cookie or Authorization may make the answer that user's (unless the key says how).
        credentialed = route.key is None and has_credentials(scope)
        varied = route.vary
        try:
            key = variant(
                bound_key(route.key_of(scope, path)),
                varied,
                headers,
                per_credentials=not credentialed,
            )
        except Exception:
            logger.exception("the key of %s failed", scope.get("path"))
            await answer_with(
                plain_answer(
                    500,
                    "This request has no key.",
                    settings.retry_after,
                    "workerless; detail=error",
                )
            )
            return
        if key in self._too_large:
            await self.app(scope, receive, send)
            return
        cookies: list[tuple[str, str]] = []
        try:
            if credentialed:
                found = await self._fetch_credentialed(route, key, varied, scope)
                if found is None:  # not public: that user's alone
                    await self.app(scope, receive, send)
                    return
                fetched, cookies = found
            else:
                fetched = await self.cacher.fetch_result(
                    key,
                    partial(self._compute, scope, varied, route, None),
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
                self._too_large.add(key, self.settings.ttl)
                await self.app(scope, receive, send)
                return
            browser_ttl = settings.browser_ttl if route.browser_ttl is None else route.browser_ttl
            answer = fetched_answer(fetched, browser_ttl, headers)
            answer.headers.extend(cookies)  # its own response's cookies, to that user only
        await answer_with(answer)

    async def _fetch_credentialed(
        self, route: Route, key: str, varied: frozenset[str], scope: Scope
    ) -> tuple[Fetched[CachedResponse], list[tuple[str, str]]] | None:
        """For a request with credentials: a stored or joined response if it says ``public``,
        else the response computed for this request (with its ``Set-Cookie``), which is
        stored and shared only if it says ``public`` (RFC 9111 section 3.5).  None: a stored
        or joined response is not public, so the request must run through the app itself.

        Not knowing beforehand whether the answer will be public, the request is held until
        its computation ends (as the app would hold it), never answered 202 for its deadline.
        """
        settings = self.settings
        servable = route._servable_credentialed
        found = await self.cacher.lookup(key, hit=servable)
        if found is not None:
            if not servable(found.value):
                return None
            if found.source == "hit":
                return found, []
        own: list[tuple[CachedResponse, list[tuple[str, str]]]] = []
        fetched = await self.cacher.fetch_result(
            key,
            partial(self._compute, scope, varied, route, own),
            ttl=settings.ttl if route.ttl is None else route.ttl,
            deadline=None,
            hard_limit=route.hard_limit,
            cacheable=route._cacheable,
            shareable=route._shareable_for(varied, credentials=True),
            stale=route.stale,
            stale_if_error=route.stale_if_error,
        )
        if own and fetched.value is own[0][0]:
            return fetched, own[0][1]
        # Another request's response (stored meanwhile, joined, or a stale one kept).
        return (fetched, []) if servable(fetched.value) else None

    async def _compute(
        self,
        scope: Scope,
        varied: frozenset[str],
        route: Route,
        own: list[tuple[CachedResponse, list[tuple[str, str]]]] | None,
    ) -> CachedResponse:
        """Run the request through the app with a copy of its scope; capture what it sends.

        ``own``, if given, receives the response and the app's ``Set-Cookie`` fields (which
        the response never keeps), so the request it was computed for can tell it apart.

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
        if own is not None:
            cookies = [
                (name, value) for name, value in response_headers if name.lower() == "set-cookie"
            ]
            own.append((response, cookies))
        return response

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
