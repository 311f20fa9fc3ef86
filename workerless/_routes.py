"""The routes of WorkerlessMiddleware: a path pattern with settings of its own, and its key."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._asgi import Scope
from ._config import check_keyword
from ._http import app_url
from ._rules import SharingRules, is_success

__all__ = ["CachedRoute", "Route", "ScopeKey"]

ScopeKey = Callable[[Scope], str]


@dataclass(frozen=True, slots=True)
class CachedRoute:
    """A path pattern the middleware caches, with settings of its own.

    ``pattern`` is a glob (``"/fragment/*"``; ``*`` matches ``/`` too) or a compiled regular
    expression that must match the whole path (below the mount point).  Unset settings come
    from the middleware's.  ``key(scope)`` replaces the default key (the path plus the sorted
    query string) and receives the request's ASGI scope; it must return a str.
    """

    pattern: str | re.Pattern[str]
    ttl: float | None = None
    deadline: float | None = None
    hard_limit: float | None = None
    key: ScopeKey | None = None
    cache_statuses: Callable[[int], bool] | None = None
    stale: float | None = None
    stale_if_error: float | None = None
    browser_ttl: float | None = None


class Route(SharingRules):
    """A `CachedRoute`, checked, with its sharing rules; ``key`` and ``cache_statuses`` fall
    back to the middleware's, the numbers (None) to the settings, read at each request."""

    def __init__(
        self,
        route: CachedRoute,
        key: ScopeKey | None,
        cache_statuses: Callable[[int], bool] | None,
    ) -> None:
        pattern = route.pattern
        self.name = pattern if isinstance(pattern, str) else pattern.pattern
        where = f" of route {self.name!r}"
        for name in ("ttl", "deadline", "hard_limit", "stale", "stale_if_error", "browser_ttl"):
            value = getattr(route, name)
            if value is not None:
                check_keyword(name, value, f"{name}={where}")
        for name in ("key", "cache_statuses"):
            function = getattr(route, name)
            if function is not None and not callable(function):
                raise TypeError(f"{name}={where} must be a function, not {function!r}")
        self.regex = re.compile(fnmatch.translate(pattern)) if isinstance(pattern, str) else pattern
        self.ttl = route.ttl
        self.deadline = route.deadline
        self.hard_limit = route.hard_limit
        self.key = route.key or key
        self.stale = route.stale
        self.stale_if_error = route.stale_if_error
        self.browser_ttl = route.browser_ttl
        SharingRules.__init__(self, route.cache_statuses or cache_statuses or is_success)

    def key_of(self, scope: Scope, path: str) -> str:
        """The request's key before its variant: the key function's, or path plus query."""
        if self.key is None:
            return app_url(scope, path)
        value = self.key(scope)
        if not isinstance(value, str):
            raise TypeError(
                f"the key function of route {self.name!r} returned "
                f"{type(value).__name__}, not str: {value!r}"
            )
        return value
