"""The HTTP answers of a cached route: a fetched response (or its 304), a 202, an error.

One place turns what the Cacher returned into HTTP, so every answer carries ``Cache-Control``
and ``Cache-Status`` the same way, for fragment routes and `WorkerlessMiddleware` alike.  The
answers are framework-neutral `Answer` values (status, header list, body); `respond`,
`pending` and `plain` wrap them in Quart responses for fragment routes, and the middleware
sends them over ASGI itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import Response, current_app, request
from werkzeug.datastructures import Headers

from ._clients import VARIES_ON
from ._config import Settings
from ._errors import StillComputing
from ._flight import Fetched
from ._http import app_url, location
from ._response import CachedResponse, etag_matches
from ._rules import HeaderLookup

__all__ = [
    "Answer",
    "cache_status",
    "fetched_answer",
    "pending",
    "pending_answer",
    "plain",
    "plain_answer",
    "respond",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: its status, headers (no ``Content-Length`` unless it must be said
    although the body is empty: the server adds the body's) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def fetched_answer(
    fetched: Fetched[CachedResponse], browser_ttl: float, header: HeaderLookup
) -> Answer:
    """The answer for a fetched response: its status, headers and body (or a 304 when the
    request's ``If-None-Match``, read through ``header``, names its ETag), with
    ``Cache-Control`` for every cache downstream and ``Cache-Status`` saying how it came."""
    cached = fetched.value
    # A plain list, built in one pass: this is the hit path.
    headers = []
    etag = None
    has_cache_control = False
    vary = _VARY
    for name, value in cached.headers:
        lower = name.lower()
        if lower == "etag":
            etag = value
        elif lower == "cache-control":
            has_cache_control = True
        elif lower == "vary":
            vary = _merged_vary(value)
            continue
        headers.append((name, value))
    if vary:
        headers.append(("Vary", vary))
    if not has_cache_control:
        # Say it for every cache downstream: never a shared one; the browser revalidates with
        # the ETag, or keeps the response for browser_ttl seconds.
        age = int(browser_ttl)
        headers.append(
            ("Cache-Control", f"private, max-age={age}" if age > 0 else "private, no-cache")
        )
    headers.append(("Cache-Status", cache_status(fetched)))
    if etag is not None and cached.status == 200:
        if_none_match = header("if-none-match")
        if if_none_match is not None and etag_matches(if_none_match, etag):
            return Answer(304, [(n, v) for n, v in headers if n.lower() in _KEPT_BY_304], b"")
    return Answer(cached.status, headers, cached.body)


_VARY = ", ".join(VARIES_ON)


def _merged_vary(value: str) -> str:
    """A view's own ``Vary`` plus the client headers every answer varies on."""
    present = {name.strip().lower() for name in value.split(",")}
    if "*" in present:
        return value
    missing = [name for name in VARIES_ON if name.lower() not in present]
    return ", ".join(filter(None, [value.strip(), *missing]))


# What a 304 keeps of the 200 it stands for (RFC 9110 section 15.4.5).
_KEPT_BY_304 = frozenset(
    {"cache-control", "cache-status", "content-location", "etag", "expires", "vary"}
)


def cache_status(fetched: Fetched[CachedResponse]) -> str:
    """The ``Cache-Status`` field (RFC 9211) saying how this answer was obtained."""
    cached = fetched.value
    if fetched.source in ("hit", "stale"):
        ttl = "" if fetched.ttl is None else f"; ttl={int(fetched.ttl)}"
        if fetched.source == "hit":
            return f"workerless; hit{ttl}"
        detail = "; detail=stale-if-error" if fetched.failure else ""
        return f"workerless; hit; fwd=stale{ttl}{detail}"
    status = "workerless; fwd=miss"
    if cached.status != 200:
        status += f"; fwd-status={cached.status}"
    if fetched.source == "collapsed":
        status += "; collapsed"
    if fetched.stored:
        status += "; stored"
    if not fetched.store_available:
        status += "; detail=store-unavailable"
    return status


def pending_answer(exc: StillComputing, retry_after: int, where: str) -> Answer:
    """The ``202`` for a request whose deadline passed (or whose server began to stop);
    ``where`` is the request's own URL, a path on this host (see `location`)."""
    detail = "shutting-down" if exc.shutting_down else "pending"
    collapsed = "; collapsed" if exc.collapsed else ""
    headers = [
        # Without a length, a client speaking HTTP/1.0 (nginx's default upstream) waits for a
        # close: say it although the body is empty.
        ("Content-Length", "0"),
        ("Location", where),
        ("Retry-After", str(retry_after)),
        ("Cache-Control", "no-store"),
        ("Cache-Status", f"workerless; fwd=miss{collapsed}; detail={detail}"),
        ("Vary", _VARY),
    ]
    return Answer(202, headers, b"")


def plain_answer(status: int, text: str, retry_after: int, cache_status: str) -> Answer:
    """A short text answer workerless writes itself (502, 503, 504): never stored anywhere."""
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Cache-Status", cache_status),
        ("Vary", _VARY),
    ]
    if status == 503:
        headers.append(("Retry-After", str(retry_after)))
    return Answer(status, headers, (text + "\n").encode())


# -- Quart responses, for fragment routes ------------------------------------------------------


def respond(fetched: Fetched[CachedResponse], browser_ttl: float) -> Response:
    """`fetched_answer` for the current Quart request, as a Quart response."""
    return _quart(fetched_answer(fetched, browser_ttl, request.headers.get))


def pending(exc: StillComputing, settings: Settings) -> Response:
    """`pending_answer` for the current Quart request, as a Quart response."""
    where = location(request.scope, app_url(request.scope, request.path))
    response = _quart(pending_answer(exc, settings.retry_after, where))
    del response.headers["Content-Type"]  # an empty body has no type
    return response


def plain(status: int, text: str, settings: Settings, cache_status: str) -> Response:
    """`plain_answer` as a Quart response."""
    return _quart(plain_answer(status, text, settings.retry_after, cache_status))


def _quart(answer: Answer) -> Response:
    # Quart adds the body's Content-Length, and its default Content-Type if the answer has none.
    return current_app.response_class(
        answer.body, status=answer.status, headers=Headers(answer.headers)
    )
