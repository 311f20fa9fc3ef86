"""ASGI plumbing of WorkerlessMiddleware: the request's path and headers, a captured
background response, answers and the client assets sent over ASGI."""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import trio

from ._answers import Answer
from ._assets import STATIC_DIR
from ._response import etag_matches, strong_etag
from ._rules import HeaderLookup

__all__ = [
    "STATIC_PREFIX",
    "ASGIApp",
    "Capture",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "first_of",
    "has_credentials",
    "header_lookup",
    "path_below_root",
    "send_answer",
    "send_asset",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Capture:
    """What the app sends for one background request: its status, headers and body."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.status = 500
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.complete = trio.Event()
        self._asked = False

    async def receive(self) -> Message:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The client of a background request never goes away: wait until cancelled.
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            ]
        elif kind == "http.response.body" and not self.complete.is_set():
            chunk = bytes(message.get("body", b""))
            self.size += len(chunk)
            if self.size > self.limit:
                self.overflow = True
                self.body.clear()
                self.complete.set()
                await trio.sleep_forever()  # until the computation cancels the app
            self.body.append(chunk)
            if not message.get("more_body", False) and not self.overflow:
                self.complete.set()


async def first_of(*events: trio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


STATIC_PREFIX = "/workerless/static/"
# The client script, styles and spinner, by name, read once: the files of static/ itself.
_ASSETS: dict[str, tuple[bytes, str, str]] = {}


async def send_asset(path: str, scope: Scope, send: Send) -> bool:
    """Serve ``/workerless/static/<name>`` (the extension's URLs); False if no such file."""
    name = path[len(STATIC_PREFIX) :]
    if not _ASSETS:
        for file in STATIC_DIR.iterdir():
            if file.is_file():
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                body = file.read_bytes()
                _ASSETS[file.name] = (body, kind, strong_etag(body))
    asset = _ASSETS.get(name)
    if asset is None:
        return False
    body, kind, etag = asset
    if_none_match = header_lookup(scope)("if-none-match")
    headers = [("Content-Type", kind), ("ETag", etag), ("Cache-Control", "no-cache")]
    if if_none_match is not None and etag_matches(if_none_match, etag):
        await send_answer(send, Answer(304, headers[1:], b""), head=True)
    else:
        await send_answer(send, Answer(200, headers, body), head=scope["method"] == "HEAD")
    return True


def path_below_root(scope: Scope) -> str:
    """The request's path below the mount point (ASGI ``root_path``), as routes match it."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :] or "/"
    return path


def header_lookup(scope: Scope) -> HeaderLookup:
    """A lookup of the request's headers by lower-case name (repeated ones joined with
    ``, ``), reading the scope only when asked: on a plain hit it is asked little."""
    raw: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())

    def lookup(name: str) -> str | None:
        wanted = name.encode("latin-1")
        values = [value.decode("latin-1") for key, value in raw if key.lower() == wanted]
        return ", ".join(values) if values else None

    return lookup


def has_credentials(scope: Scope) -> bool:
    return any(
        name.lower() in (b"cookie", b"authorization") for name, _ in scope.get("headers", ())
    )


async def send_answer(send: Send, answer: Answer, head: bool) -> None:
    """Send ``answer`` over ASGI, with its Content-Length (HEAD: the length, no body)."""
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    if answer.status != 304 and not any(name.lower() == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": b"" if head else answer.body, "more_body": False}
    )
