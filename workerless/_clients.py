"""What a fragment route sends to htmx (``HX-Request``) and Turbo Frames (``Turbo-Frame``).

The cache always holds the view's own response; the adaptation happens here, per request, on
the way out.  So no request header is part of the key, every client shares one cached entry,
and a plain request never gets a body adapted for htmx or Turbo.  Every fragment response says
``Vary: HX-Request, Turbo-Frame`` so HTTP caches keep the variants apart too.
"""

from __future__ import annotations

import hashlib
from html import escape
from urllib.parse import urlsplit

from quart import Response, current_app, request
from werkzeug.datastructures import Headers

from ._http import request_header
from ._response import etag_matches

__all__ = ["VARIES_ON", "adapt_for_client"]

# Every fragment answer varies on these (the answers module adds them, see _answers).
VARIES_ON = ("HX-Request", "Turbo-Frame")

# The Cache-Status details (see _fragment) of the answers workerless writes itself.
_PENDING = frozenset({"pending", "shutting-down"})
_FAILED = frozenset({"error", "not-running", "overloaded"})

# Statuses with no body to wrap, and what a 304 keeps of the 200 it stands for.
_NO_BODY = frozenset({204, 304})
_KEPT = frozenset({"cache-control", "cache-status", "content-location", "etag", "expires", "vary"})

_ERROR_MESSAGE = "This part of the page could not be loaded (HTTP {status})."
_PENDING_MESSAGE = "Still computing this part of the page."


async def adapt_for_client(response: Response) -> Response:
    """Return ``response`` as the requesting client library needs it.

    ``HX-Request: true`` (htmx): a 202 gets ``HX-Reswap: none`` (the slot keeps its spinner)
    and ``HX-Trigger: workerless:pending``; a 5xx written by workerless becomes an HTML error
    box with a Retry button, swapped ``innerHTML``.  ``Turbo-Frame: <id>`` (Turbo): HTML is
    wrapped in ``<turbo-frame id="<id>">`` unless the view already did, with an ETag of its own;
    a 202 and a 5xx become HTML frames (a note with a link, an error box with a Retry link).
    Statuses never change.
    Other requests get ``response`` as it is (its ``Vary`` already names both headers).
    """
    scope = request.scope
    if request_header(scope, "hx-request") == "true":
        return _for_htmx(response)
    frame = request_header(scope, "turbo-frame")
    if frame:
        return await _for_turbo(response, frame)
    return response


def _detail(response: Response) -> str | None:
    """The ``detail`` parameter of workerless's Cache-Status, or None."""
    cache_status = response.headers.get("Cache-Status", "")
    if not cache_status.startswith("workerless"):
        return None
    for parameter in cache_status.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name == "detail":
            return value
    return None


def _own_url() -> str:
    """This request's path and query as the browser asked (with the ASGI root_path)."""
    parts = urlsplit(request.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _error_box(status: int, retry: str) -> str:
    message = escape(_ERROR_MESSAGE.format(status=status))
    return (
        f'<div class="wl-error" role="alert"><p class="wl-error-message">{message}</p>{retry}</div>'
    )


def _set_html(response: Response, html: str) -> None:
    response.set_data(html)  # Quart recomputes Content-Length
    response.mimetype = "text/html"


def _for_htmx(response: Response) -> Response:
    detail = _detail(response)
    if response.status_code == 202 and detail in _PENDING:
        # htmx 2 swaps a 2xx, even an empty one: keep the spinner, let the extension ask again.
        response.headers["HX-Reswap"] = "none"
        response.headers["HX-Trigger"] = "workerless:pending"
    elif response.status_code >= 500 and detail in _FAILED:
        retry = '<button type="button" class="wl-retry" data-workerless-retry>Retry</button>'
        _set_html(response, _error_box(response.status_code, retry))
        # Into the slot, never over it: the slot must survive for Retry.
        response.headers["HX-Reswap"] = "innerHTML"
    return response


async def _for_turbo(response: Response, frame: str) -> Response:
    detail = _detail(response)
    frame_id = escape(frame, quote=True)
    url = escape(_own_url(), quote=True)
    if response.status_code == 202 and detail in _PENDING:
        # workerless-turbo.js keeps the spinner and reloads the frame; without it, a link.
        body = (
            f'<p class="wl-pending" role="status">{escape(_PENDING_MESSAGE)} '
            f'<a href="{url}">Load it</a></p>'
        )
    elif response.status_code >= 500 and detail in _FAILED:
        retry = f'<a class="wl-retry" href="{url}" data-workerless-retry>Retry</a>'
        body = _error_box(response.status_code, retry)
    elif response.mimetype == "text/html" and response.status_code not in _NO_BODY:
        body = await response.get_data(as_text=True)
        if f'<turbo-frame id="{frame_id}"' in body:  # the view wrapped it itself
            return response
    else:
        return response
    _set_html(response, f'<turbo-frame id="{frame_id}">{body}</turbo-frame>')
    return _retagged(response, frame)


def _retagged(response: Response, frame: str) -> Response:
    """``response`` with an ETag of its own for this frame, or 304 if the request has it.

    A wrapped body is another representation, so it needs another entity tag (RFC 9110
    section 8.8.3); a browser revalidating its wrapped copy then still gets its 304.
    """
    etag = response.headers.get("ETag")
    if etag is None:
        return response
    weak, opaque = etag.startswith("W/"), etag.removeprefix("W/").strip('"')
    digest = hashlib.sha256(frame.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    tagged = f'{"W/" if weak else ""}"{opaque}.frame-{digest}"'
    response.headers["ETag"] = tagged
    if_none_match = request_header(request.scope, "if-none-match")
    if response.status_code != 200 or not if_none_match or not etag_matches(if_none_match, tagged):
        return response
    kept = [(name, value) for name, value in response.headers.items() if name.lower() in _KEPT]
    return current_app.response_class(b"", status=304, headers=Headers(kept))
