"""The HTTP answers of a fragment route: a fetched response (or its 304), a 202, an error.

One place turns what the Cacher returned into HTTP, so every answer carries its length,
``Cache-Control`` and ``Cache-Status`` the same way.
"""

from __future__ import annotations

from quart import Response, current_app, request
from werkzeug.datastructures import Headers

from ._clients import VARIES_ON
from ._config import Settings
from ._errors import StillComputing
from ._flight import Fetched
from ._http import app_url, location, request_field
from ._response import CachedResponse, etag_matches

__all__ = ["cache_status", "pending", "plain", "respond"]


def respond(fetched: Fetched[CachedResponse], browser_ttl: float) -> Response:
    """The answer for a fetched response: its status, headers and body (or a 304), with
    ``Cache-Control`` for every cache downstream and ``Cache-Status`` saying how it came."""
    cached = fetched.value
    # A plain list, built in one pass: this is the hit path, and werkzeug's Headers is slow.
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
        # the ETag, or keeps the fragment for browser_ttl seconds.
        age = int(browser_ttl)
        headers.append(
            ("Cache-Control", f"private, max-age={age}" if age > 0 else "private, no-cache")
        )
    headers.append(("Cache-Status", cache_status(fetched)))
    if etag is not None and cached.status == 200:
        if_none_match = request_field(request.scope, b"if-none-match")
        if if_none_match is not None and etag_matches(if_none_match, etag):
            kept = [(n, v) for n, v in headers if n.lower() in _KEPT_BY_304]
            return current_app.response_class(b"", status=304, headers=Headers(kept))
    return current_app.response_class(cached.body, status=cached.status, headers=Headers(headers))


_VARY = ", ".join(VARIES_ON)


def _merged_vary(value: str) -> str:
    """A view's own ``Vary`` plus the client headers every fragment answer varies on."""
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


def pending(exc: StillComputing, settings: Settings) -> Response:
    """The ``202`` for a request whose deadline passed (or whose server began to stop)."""
    response = current_app.response_class(b"", status=202)
    response.headers.clear()
    # Without a length, a client speaking HTTP/1.0 (nginx's default upstream) waits for a close.
    response.headers["Content-Length"] = "0"
    response.headers["Location"] = location(request.scope, app_url(request.scope, request.path))
    response.headers["Retry-After"] = str(settings.retry_after)
    response.headers["Cache-Control"] = "no-store"
    detail = "shutting-down" if exc.shutting_down else "pending"
    collapsed = "; collapsed" if exc.collapsed else ""
    response.headers["Cache-Status"] = f"workerless; fwd=miss{collapsed}; detail={detail}"
    response.headers["Vary"] = _VARY
    return response


def plain(status: int, text: str, settings: Settings, cache_status: str) -> Response:
    """A short text answer workerless writes itself (502, 503, 504): never stored anywhere."""
    response = current_app.response_class(text + "\n", status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cache-Status"] = cache_status
    response.headers["Vary"] = _VARY
    if status == 503:
        response.headers["Retry-After"] = str(settings.retry_after)
    return response
