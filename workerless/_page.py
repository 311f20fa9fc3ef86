"""Streamed pages: the skeleton at once, then each fragment in the same response as it completes.

The page's body is rendered inside a declarative shadow root (``<template shadowrootmode>``)
whose placeholders are ``<slot>`` elements; each fragment is written later in the response as
a light-DOM child ``<div slot="wl-N">`` of the shadow host, so the browser puts it in its
placeholder with no script at all.  Fragments go through the fragment routes' own cacher and
keys: one computed here is a hit for a later fetch of its URL, and the other way round.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio
from markupsafe import Markup, escape
from quart import Response, current_app, render_template, request

from ._answers import cache_status
from ._config import check_keyword
from ._errors import ComputationFailed, Overloaded, StillComputing
from ._events import Miss
from ._flight import Fetched
from ._fragment import FragmentRoute, Workerless
from ._response import CachedResponse
from ._stream_state import rendering

__all__ = ["Page", "stream_template"]

logger = logging.getLogger("workerless")


async def stream_template(
    template_name_or_list: str | list[str], *, deadline: float | None = None, **context: Any
) -> Response:
    """Render a template that extends ``workerless/layout.html`` as one streamed response.

    Like Quart's ``render_template``, returned from a view.  The skeleton is sent at once, with
    every fragment already in the cache inlined; each ``wl.fragment(url)`` of the template is
    computed through its fragment route (same key, single flight and cache) and written into
    the response as it completes.  A fragment waits its route's ``deadline`` at most, and never
    past the page's ``deadline`` seconds (the settings' ``deadline`` by default): the response
    then ends with its placeholder pending, which the client script fetches as in a fetched
    page (without JavaScript it shows a link).  A failing fragment gets an error box.
    An HTTP/1.0 client, which cannot take a streamed body, gets the whole page at the end.
    A ``deadline`` that is not a positive number is a TypeError or ValueError naming it.
    """
    app = current_app
    workerless = app.extensions.get("workerless")
    if not isinstance(workerless, Workerless):
        raise RuntimeError("stream_template() needs Workerless(app) on the current app")
    if deadline is not None:
        check_keyword("deadline", deadline, "deadline= of stream_template")
    limit = workerless.settings.deadline if deadline is None else deadline
    page = Page(workerless, trio.current_time() + limit)
    token = rendering.set(page)
    try:
        html = await render_template(template_name_or_list, **context)
    finally:
        rendering.reset(token)
    head, mark, tail = html.partition(page.stream_mark)
    if not mark:
        raise RuntimeError(
            f"stream_template({template_name_or_list!r}): the template does not extend "
            "workerless/layout.html, so there is nowhere to stream its fragments"
        )
    headers = {
        "Cache-Control": "private, no-cache",
        # nginx buffers a proxied response unless told not to: this one must flow as written.
        "X-Accel-Buffering": "no",
    }
    if request.method == "HEAD":
        return app.response_class(b"", mimetype="text/html", headers=headers)
    await page.start()
    body = page.stream(page.inline(head), tail)
    if request.http_version == "1.0":
        # No chunked encoding in HTTP/1.0 (nginx's default upstream protocol), and hypercorn
        # does not close such a response: send the whole page at the end, with its length.
        whole = b"".join([chunk async for chunk in body])
        return app.response_class(whole, mimetype="text/html", headers=headers)
    response = app.response_class(body, mimetype="text/html", headers=headers)
    response.timeout = None  # Quart cuts a streamed body after RESPONSE_TIMEOUT otherwise
    return response


@dataclass
class _Slot:
    """One placeholder of the page, and what became of its fragment."""

    name: str
    url: str
    label: str
    class_: str
    retries: int | None
    timeout: float | None
    settled: trio.Event = field(default_factory=trio.Event)  # done, or known to be computing
    done: bool = False
    state: str = "loading"  # then "loaded", "error" or "pending"
    inner: str = ""
    cache_status: str = ""

    def finish(self, state: str, inner: str, cache_status: str = "") -> None:
        self.state, self.inner, self.cache_status = state, inner, cache_status
        self.done = True


class Page:
    """The fragments of one streamed page while it renders and streams."""

    def __init__(self, workerless: Workerless, deadline: float) -> None:
        self.workerless = workerless
        self.deadline = deadline
        self._token = secrets.token_hex(8)
        self.stream_mark = Markup(f"<!--workerless-stream-{self._token}-->")
        self._slots: list[_Slot] = []
        self._by_key: dict[str, list[_Slot]] = {}
        self._waiting: set[str] = set()  # slots left out of the skeleton, to stream
        self._send, self._receive = trio.open_memory_channel[_Slot](math.inf)

    def placeholder(
        self,
        url: str,
        label: str = "",
        class_: str = "",
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Markup:
        """Called by the ``wl.fragment`` macro: a mark, replaced by the placeholder once its
        fragment is known to be cached (inlined) or not (a slot with a spinner)."""
        slot = _Slot(f"wl-{len(self._slots)}", url, label or url, class_, retries, timeout)
        self._slots.append(slot)
        return Markup(f"<!--workerless-slot-{self._token}-{slot.name}-->")

    async def start(self) -> None:
        """Start every fragment; return once each is done or known to be computing."""
        if not self._slots:
            return
        unsubscribe = self.workerless.cacher.on(Miss, self._missed)
        try:
            nursery: trio.Nursery = current_app.nursery  # type: ignore[attr-defined]
            for slot in self._slots:
                nursery.start_soon(self._fetch, slot, request.headers.copy(), request.scheme)
            with trio.move_on_at(self.deadline):
                for slot in self._slots:
                    await slot.settled.wait()
        finally:
            unsubscribe()

    def _missed(self, event: Miss) -> None:
        for slot in self._by_key.get(event.key, ()):
            slot.settled.set()

    def inline(self, head: str) -> str:
        """``head`` with each placeholder filled: the fragment if done, else its slot."""
        for slot in self._slots:
            mark = f"<!--workerless-slot-{self._token}-{slot.name}-->"
            head = head.replace(mark, _placeholder(slot), 1)
            if not slot.done:
                self._waiting.add(slot.name)
        return head

    async def stream(self, head: str, tail: str) -> AsyncIterator[bytes]:
        """The response body: the skeleton, each fragment as it completes, then the tail."""
        yield head.encode()
        waiting = self._waiting
        while waiting:
            # Never yield inside a cancel scope: the generator may be closed from elsewhere.
            with trio.move_on_at(self.deadline) as scope:
                slot = await self._receive.receive()
            if scope.cancelled_caught:
                break
            if slot.name in waiting:
                waiting.discard(slot.name)
                yield _chunk(slot).encode()
        for slot in self._slots:
            if slot.name in waiting:
                slot.finish("pending", _fallback_link(slot))
                yield _chunk(slot).encode()
        self._receive.close()
        yield tail.encode()

    async def _fetch(self, slot: _Slot, headers: Any, scheme: str) -> None:
        """Fetch one fragment in a request context for its URL; never raises."""
        app = current_app
        try:
            async with app.test_request_context(
                _app_path(slot.url), headers=headers, scheme=scheme
            ) as context:
                fragment = context.request
                endpoint = fragment.url_rule.endpoint if fragment.url_rule else None
                route = getattr(app.view_functions.get(endpoint or ""), "__self__", None)
                if fragment.routing_exception is not None or not isinstance(route, FragmentRoute):
                    # The browser can still fetch it (and show what that URL answers).
                    logger.warning("streamed page: %s is not a fragment route", slot.url)
                    slot.finish("pending", _fallback_link(slot))
                else:
                    key = route.page_key()
                    self._by_key.setdefault(key, []).append(slot)
                    wait = self.deadline - trio.current_time()
                    if route.deadline is not None:
                        wait = min(wait, route.deadline)
                    view_args = fragment.view_args or {}
                    _show_result(slot, await route.fetch_for_page(key, view_args, max(wait, 0)))
        except StillComputing:
            slot.finish("pending", _fallback_link(slot))
        except ComputationFailed as exc:
            _show_error(slot, 504 if exc.timed_out else 502)
        except Overloaded:
            _show_error(slot, 503)
        except Exception:
            # On the app's nursery an exception would stop the server: log it, show an error.
            logger.exception("streamed page: fragment %s failed", slot.url)
            _show_error(slot, 500)
        slot.settled.set()
        # The page's response may have ended (or its client left): the result is cached anyway.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self._send.send_nowait(slot)


def _app_path(url: str) -> str:
    """``url`` (as the browser would fetch it) as a path below the app's mount point."""
    parts = urlsplit(url)
    path = parts.path or "/"
    root = request.root_path
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path + (f"?{parts.query}" if parts.query else "")


def _show_result(slot: _Slot, fetched: Fetched[CachedResponse]) -> None:
    cached = fetched.value
    if not 200 <= cached.status < 300:
        _show_error(slot, cached.status)
    else:
        slot.finish("loaded", cached.body.decode("utf-8", "replace"), cache_status(fetched))


def _chunk(slot: _Slot) -> str:
    """One fragment as streamed: a light-DOM child of the shadow host, filling its slot."""
    return (
        f'<div slot="{slot.name}" class="wl-chunk" data-fragment-state="{slot.state}"'
        f"{_cache_status(slot)}>{slot.inner}</div>\n"
    )


def _cache_status(slot: _Slot) -> str:
    return f' data-cache-status="{escape(slot.cache_status)}"' if slot.cache_status else ""


def _show_error(slot: _Slot, status: int) -> None:
    # A link, not a button: without JavaScript it still goes somewhere; with it, it retries.
    box = (
        '<div class="wl-error">'
        '<p class="wl-error-message">This part of the page could not be loaded '
        f"(HTTP {status}).</p>"
        f'<a class="wl-retry" href="{escape(slot.url)}" data-fragment-retry>Retry</a></div>'
    )
    slot.finish("error", box, f"workerless; fwd=miss; fwd-status={status}")


def _fallback_link(slot: _Slot) -> str:
    return (
        f'<a class="wl-fallback" href="{escape(slot.url)}">'
        f"{escape(slot.label)}: still computing, open it</a>"
    )


def _spinner_slot(slot: _Slot) -> str:
    return (
        f'<slot name="{slot.name}"><span class="wl-spinner" role="status">'
        f'<span class="wl-visually-hidden">Loading {escape(slot.label)}…</span></span></slot>'
    )


def _placeholder(slot: _Slot) -> str:
    """The placeholder in the skeleton: the fragment itself if done by then, else its slot."""
    classes = "wl-fragment wl-streamed" + (f" {escape(slot.class_)}" if slot.class_ else "")
    attributes = ""
    if slot.retries is not None:
        attributes += f' data-fragment-retries="{escape(str(slot.retries))}"'
    if slot.timeout is not None:
        attributes += f' data-fragment-timeout="{escape(str(slot.timeout))}"'
    return (
        f'<div class="{classes}" data-fragment="{escape(slot.url)}" data-fragment-slot='
        f'"{slot.name}" data-fragment-state="{slot.state}"{_cache_status(slot)}{attributes}'
        f' aria-live="polite">{slot.inner if slot.done else _spinner_slot(slot)}</div>'
    )
