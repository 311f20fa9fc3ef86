"""What a fragment's cached response holds, and which of its headers may be kept."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CachedResponse",
    "etag_matches",
    "header",
    "is_private",
    "is_public",
    "kept_headers",
    "strong_etag",
    "vary_names",
]

# Never stored: hop-by-hop headers, what the server recomputes, and per-client state.
_DROPPED = frozenset(
    {
        "cache-status",
        "connection",
        "content-length",
        "date",
        "keep-alive",
        "proxy-connection",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """The status, headers and body a fragment view produced (``Set-Cookie`` is never kept)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def build(cls, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> CachedResponse:
        return cls(status, kept_headers(headers), body)


def kept_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``headers`` without the ones a cache must never keep nor replay."""
    return tuple((name, value) for name, value in headers if name.lower() not in _DROPPED)


def _directives(headers: Iterable[tuple[str, str]], field: str) -> set[str]:
    return {
        part.strip().split("=", 1)[0].strip().lower()
        for name, value in headers
        if name.lower() == field
        for part in value.split(",")
    }


def is_private(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether ``Cache-Control`` forbids a shared cache to keep the response (RFC 9111 5.2.2)."""
    return bool(_directives(headers, "cache-control") & {"private", "no-store"})


def is_public(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether ``Cache-Control`` says ``public``: a shared cache may then keep and serve the
    response although the request that got it had credentials (RFC 9111 sections 3.5, 5.2.2.9)."""
    return "public" in _directives(headers, "cache-control")


def vary_names(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The request header names a response varies on, lower-cased (``*`` included as is)."""
    return frozenset(name for name in _directives(headers, "vary") if name)


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (lower-case), or None."""
    for field, value in headers:
        if field.lower() == name:
            return value
    return None


def strong_etag(body: bytes) -> str:
    """A strong entity tag for ``body``: its SHA-256, quoted (RFC 9110 section 8.8.3)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 13.1.2 asks)."""
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))
