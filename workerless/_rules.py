"""What a cached route may store and share: statuses, private answers, Vary, credentials.

Fragment routes and `WorkerlessMiddleware` keep the same rules, so both live here: a route's
`SharingRules` (which responses are stored, which are handed to requests that joined, the
request headers learned from ``Vary``) and `variant` (the key for one request's values of
those headers, and of its credentials).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from ._cacher import Cacher
from ._keys import _SAFE_PATH
from ._response import CachedResponse, is_private, vary_names

__all__ = [
    "MAX_VARY",
    "VARIANT_MARK",
    "HeaderLookup",
    "SharingRules",
    "drop_variants",
    "is_success",
    "prefix_key",
    "variant",
]

# A view varying on more than a few headers is per-request: it is left uncached.
MAX_VARY = 8
# Variants of a key (one per value of the headers it varies on) live under key + this mark.
VARIANT_MARK = "#v="


# A request header's value by its lower-case name, or None (e.g. Quart's ``headers.get``).
HeaderLookup = Callable[[str], str | None]


def is_success(status: int) -> bool:
    """The default ``cache_statuses``: 2xx responses are stored."""
    return 200 <= status < 300


class SharingRules:
    """Which responses of one route are stored and shared, and the headers it varies on.

    ``vary`` holds the request headers the route's responses were seen to vary on (their
    ``Vary``): learned from its responses by `learn_vary`, they become part of the key from
    then on.  A response is stored only if ``cache_statuses(status)`` is true; it is handed
    to requests that joined its computation only if it is shareable (`shareable_for`).
    """

    def __init__(self, cache_statuses: Callable[[int], bool]) -> None:
        self.cache_statuses = cache_statuses
        self.vary: frozenset[str] = frozenset()
        self._shareables: dict[frozenset[str], Callable[[CachedResponse], bool]] = {}

    def _cacheable(self, response: CachedResponse) -> bool:
        return self.cache_statuses(response.status)

    def _shareable(self, varied: frozenset[str], response: CachedResponse) -> bool:
        """Whether a response computed under a key covering ``varied`` may serve others:
        not ``private``/``no-store``, not ``Vary: *``, varying on no header outside the key."""
        names = vary_names(response.headers)
        return not is_private(response.headers) and "*" not in names and names <= varied

    def _shareable_for(self, varied: frozenset[str]) -> Callable[[CachedResponse], bool]:
        """`_shareable` bound to ``varied``, made once per value of it (not once per request)."""
        bound = self._shareables.get(varied)
        if bound is None:
            bound = self._shareables[varied] = partial(self._shareable, varied)
        return bound

    def learn_vary(self, response: CachedResponse, varied: frozenset[str]) -> None:
        """Add the headers ``response`` varies on beyond ``varied`` to the route's ``vary``."""
        names = vary_names(response.headers) - varied - {"*"}
        if names:
            learned = self.vary | names
            self.vary = learned if len(learned) <= MAX_VARY else self.vary


def variant(key: str, varied: frozenset[str], header: HeaderLookup) -> str:
    """``key`` for this request's values of the headers the route varies on.

    A request with credentials (``Authorization``) always gets a key of its own: a shared
    answer is never served to it, nor its answer to anyone else (RFC 9111 section 3.5).
    """
    names = sorted(varied)
    credentials = header("authorization")
    if credentials is not None and "authorization" not in varied:
        names.append("authorization")
    if not names:
        return key
    values = [[name, header(name) or ""] for name in names]
    digest = hashlib.sha256(json.dumps(values).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{key}{VARIANT_MARK}{digest[:32]}"


async def drop_variants(cacher: Cacher[Any], key: str) -> bool:
    """Drop ``key`` and its variants (one per value of the headers it varies on, one per
    credentials), which live under ``key`` + VARIANT_MARK; True if anything was cached."""
    removed = await cacher.invalidate(key)
    return await cacher.invalidate_prefix(key + VARIANT_MARK) > 0 or removed


def prefix_key(prefix: str) -> str:
    """The key prefix of every URL that starts with ``prefix`` (encoded as keys are)."""
    return quote(unquote_to_bytes(prefix), safe=_SAFE_PATH + "?=&")
