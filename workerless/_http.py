"""The request's own URL, as the key sees it and as a 202's ``Location`` gives it back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote, unquote_to_bytes, urlsplit

from ._keys import _SAFE_PATH, canonical_url

__all__ = ["app_url", "location", "request_header"]


def app_url(scope: Mapping[str, Any], path: str) -> str:
    """The request's path below the app's mount point plus its query, canonical (always ASCII).

    ``scope`` is the ASGI scope and ``path`` the path the app routed on (used only when the
    server gives no ``raw_path``).  The ASGI ``root_path`` (hypercorn ``--root-path``) is not
    part of the result, so a fragment has the same key however the app is mounted; an
    absolute-form request target (``GET http://host/x``) counts by its path only, as routing
    does.  Two requests the app routes the same way get the same result.
    """
    raw: bytes | None = scope.get("raw_path")
    if not raw:
        raw = quote(path.encode("utf-8", "surrogatepass"), safe=_SAFE_PATH).encode("ascii")
    else:
        if raw[:1] != b"/":
            raw = urlsplit(raw).path
        root: str = scope.get("root_path", "")
        if root:
            raw = _below(raw, root)
    return canonical_url(raw, scope.get("query_string", b""))


def location(scope: Mapping[str, Any], url: str) -> str:
    """Where to ask for ``url`` (an `app_url`) again: always a path on this host.

    The mount point (``root_path``) comes first, so the browser's next request reaches the app
    again through a proxy that strips nothing.  The result never starts with ``//`` nor holds
    a scheme: a leading ``//`` is sent as ``/%2F``, which every server decodes back to the same
    path, hence the same route and key.
    """
    root: str = scope.get("root_path", "")
    target = quote(root.encode("utf-8", "surrogatepass"), safe=_SAFE_PATH) + url
    if not target.startswith("/"):
        target = "/" + target
    # "//host/x" is a URL of another host to a browser (an open-redirect shape).
    if target.startswith("//"):
        target = "/%2F" + target[2:]
    return target


def _below(raw_path: bytes, root_path: str) -> bytes:
    # Quart strips root_path from the decoded path when routing; do the same on the bytes.
    decoded = unquote_to_bytes(raw_path)
    prefix = root_path.encode("utf-8", "surrogatepass")
    if decoded.startswith(prefix):
        return quote(decoded[len(prefix) :], safe=_SAFE_PATH).encode("ascii")
    return raw_path


# The request headers a hit reads, most often absent: read once per request, kept in the scope.
_HOT = frozenset({"authorization", "if-none-match", "hx-request", "turbo-frame"})
_HOT_KEY = "workerless.headers"


def request_header(scope: Mapping[str, Any], name: str) -> str | None:
    """The first value of request header ``name`` (lower-case), or None if absent.

    werkzeug's ``Headers.get`` scans every header and raises inside for an absent one, and a
    hit reads four mostly absent ones (Authorization, If-None-Match, HX-Request, Turbo-Frame):
    those come from one pass over the raw ASGI headers per request, remembered in ``scope``
    (only the ones present).  ``partial(request_header, scope)`` is a `HeaderLookup`.
    """
    if name not in _HOT:
        return _first(scope, name)
    found: dict[str, str] | None = scope.get(_HOT_KEY)
    if found is None:
        found = {}
        for field, value in scope.get("headers", ()):
            field_name = field.decode("latin-1").lower()
            if field_name in _HOT and field_name not in found:
                found[field_name] = value.decode("latin-1")
        cast(dict[str, Any], scope)[_HOT_KEY] = found  # a plain dict, as every server makes
    return found.get(name)


def _first(scope: Mapping[str, Any], name: str) -> str | None:
    for field, value in scope.get("headers", ()):
        if field.decode("latin-1").lower() == name:
            return str(value.decode("latin-1"))
    return None
