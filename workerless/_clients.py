"""What a cached route sends to htmx (``HX-Request``) and Turbo Frames (``Turbo-Frame``).

The cache always holds the app's own response; the adaptation happens here, per request, on
the way out.  So no request header is part of the key, every client shares one cached entry,
and a plain request never gets a body adapted for htmx or Turbo.  Every answer says
``Vary: HX-Request, Turbo-Frame`` so HTTP caches keep the variants apart too.

`adapt_answer` works on framework-neutral `Answer` values (`WorkerlessMiddleware` sends its
answers through it); `adapt_for_client` applies it to a fragment route's Quart response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from html import escape
from urllib.parse import urlsplit

from quart import Response, request
from werkzeug.datastructures import Headers

from ._answers import VARIES_ON, Answer
from ._http import request_header
from ._response import etag_matches, header
from ._rules import HeaderLookup

__all__ = ["VARIES_ON", "adapt_answer", "adapt_for_client"]

# The Cache-Status details (see _answers) of the answers workerless writes itself.
_PENDING = frozenset({"pending", "shutting-down"})
_FAILED = frozenset({"error", "not-running", "overloaded"})

# Statuses with no body to wrap, and what a 304 keeps of the 200 it stands for.
_NO_BODY = frozenset({204, 304})
_KEPT = frozenset({"cache-control", "cache-status", "content-location", "etag", "expires", "vary"})

_ERROR_MESSAGE = "This part of the page could not be loaded (HTTP {status})."
_PENDING_MESSAGE = "Still computing this part of the page."
_HTML = "text/html; charset=utf-8"


def adapt_answer(answer: Answer, header: HeaderLookup, own_url: Callable[[], str]) -> Answer:
    """Return ``answer`` as the requesting client library needs it.

    ``header`` reads the request's headers by lower-case name; ``own_url()`` (asked for
    Turbo only) is the request's path and query on this host, for the links in the frames.
    ``HX-Request: true`` (htmx): a 202 gets ``HX-Reswap: none`` (the slot keeps its spinner)
    and ``HX-Trigger: workerless:pending``; a 5xx written by workerless becomes an HTML error
    box with a Retry button, swapped ``innerHTML``.  ``Turbo-Frame: <id>`` (Turbo): HTML is
    wrapped in ``<turbo-frame id="<id>">`` unless the app already did, with an ETag of its own;
    a 202 and a 5xx become HTML frames (a note with a link, an error box with a Retry link).
    Statuses never change, except a wrapped 200 to a 304 when ``If-None-Match`` names its tag.
    Other requests get ``answer`` itself (its ``Vary`` already names both headers).
    """
    if header("hx-request") == "true":
        return _for_htmx(answer)
    frame = header("turbo-frame")
    if frame:
        return _for_turbo(answer, frame, own_url, header)
    return answer


async def adapt_for_client(response: Response) -> Response:
    """`adapt_answer` for the current Quart request (a fragment route's answer)."""
    lookup = partial(request_header, request.scope)
    if lookup("hx-request") != "true" and not lookup("turbo-frame"):
        return response  # the usual case, at the cost of two lookups
    body = await response.get_data(as_text=False)
    answer = Answer(response.status_code, list(response.headers.items()), body)
    adapted = adapt_answer(answer, lookup, _own_url)
    if adapted is not answer:
        response.status_code = adapted.status
        response.headers = Headers(adapted.headers)
        response.set_data(adapted.body)  # Quart recomputes Content-Length
    return response


def _own_url() -> str:
    """This request's path and query as the browser asked (with the ASGI root_path)."""
    parts = urlsplit(request.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _detail(answer: Answer) -> str | None:
    """The ``detail`` parameter of workerless's Cache-Status, or None."""
    cache_status = header(answer.headers, "cache-status") or ""
    if not cache_status.startswith("workerless"):
        return None
    for parameter in cache_status.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name == "detail":
            return value
    return None


def _with(answer: Answer, fields: dict[str, str], body: bytes | None = None) -> Answer:
    """``answer`` with ``fields`` set (replacing those of the same names) and, if given,
    another ``body`` (its length left to the server)."""
    replaced = {name.lower() for name in fields}
    if body is None:
        body = answer.body
    else:
        replaced.add("content-length")
    headers = [(name, value) for name, value in answer.headers if name.lower() not in replaced]
    return Answer(answer.status, headers + list(fields.items()), body)


def _error_box(status: int, retry: str) -> str:
    message = escape(_ERROR_MESSAGE.format(status=status))
    return (
        f'<div class="wl-error" role="alert"><p class="wl-error-message">{message}</p>{retry}</div>'
    )


def _for_htmx(answer: Answer) -> Answer:
    detail = _detail(answer)
    if answer.status == 202 and detail in _PENDING:
        # htmx 2 swaps a 2xx, even an empty one: keep the spinner, let the extension ask again.
        return _with(answer, {"HX-Reswap": "none", "HX-Trigger": "workerless:pending"})
    if answer.status >= 500 and detail in _FAILED:
        retry = '<button type="button" class="wl-retry" data-workerless-retry>Retry</button>'
        box = _error_box(answer.status, retry).encode()
        # Into the slot, never over it: the slot must survive for Retry.
        return _with(answer, {"Content-Type": _HTML, "HX-Reswap": "innerHTML"}, box)
    return answer


def _is_html(answer: Answer) -> bool:
    content_type = header(answer.headers, "content-type") or ""
    return content_type.partition(";")[0].strip().lower() == "text/html"


def _for_turbo(
    answer: Answer, frame: str, own_url: Callable[[], str], lookup: HeaderLookup
) -> Answer:
    detail = _detail(answer)
    frame_id = escape(frame, quote=True)
    opening = f'<turbo-frame id="{frame_id}">'.encode()
    if answer.status == 202 and detail in _PENDING:
        # workerless-turbo.js keeps the spinner and reloads the frame; without it, a link.
        url = escape(own_url(), quote=True)
        note = (
            f'<p class="wl-pending" role="status">{escape(_PENDING_MESSAGE)} '
            f'<a href="{url}">Load it</a></p>'
        )
        inner, fields = note.encode(), {"Content-Type": _HTML}
    elif answer.status >= 500 and detail in _FAILED:
        url = escape(own_url(), quote=True)
        retry = f'<a class="wl-retry" href="{url}" data-workerless-retry>Retry</a>'
        inner, fields = _error_box(answer.status, retry).encode(), {"Content-Type": _HTML}
    elif _is_html(answer) and answer.status not in _NO_BODY:
        if opening[:-1] in answer.body:  # the app wrapped it itself
            return answer
        inner, fields = answer.body, {}  # its own Content-Type (and charset) still holds
    else:
        return answer
    return _retagged(_with(answer, fields, opening + inner + b"</turbo-frame>"), frame, lookup)


def _retagged(answer: Answer, frame: str, lookup: HeaderLookup) -> Answer:
    """``answer`` with an ETag of its own for this frame, or 304 if the request has it.

    A wrapped body is another representation, so it needs another entity tag (RFC 9110
    section 8.8.3); a browser revalidating its wrapped copy then still gets its 304.
    """
    etag = header(answer.headers, "etag")
    if etag is None:
        return answer
    weak, opaque = etag.startswith("W/"), etag.removeprefix("W/").strip('"')
    digest = hashlib.sha256(frame.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    tagged = f'{"W/" if weak else ""}"{opaque}.frame-{digest}"'
    answer = _with(answer, {"ETag": tagged})
    if_none_match = lookup("if-none-match")
    if answer.status != 200 or not if_none_match or not etag_matches(if_none_match, tagged):
        return answer
    kept = [(name, value) for name, value in answer.headers if name.lower() in _KEPT]
    return Answer(304, kept, b"")
