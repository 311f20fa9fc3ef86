"""Settings from keywords and the environment, resolved when the app starts."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ._errors import ConfigurationError
from ._memory import MemoryStore
from ._redis_errors import redact_url
from ._store import DEFAULT_MAX_VALUE_BYTES, MAX_LEASE, Store

if TYPE_CHECKING:
    from ._cacher import Cacher

__all__ = ["Settings", "check_keyword", "configure_cacher", "store_from_url"]

DEFAULT_STORE = "memory://"
_ZERO_ALLOWED = frozenset(
    {"retry_after", "near_ttl", "stale", "stale_if_error", "early_refresh", "browser_ttl"}
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a Workerless instance; see the README's configuration table."""

    store: str | Store = DEFAULT_STORE
    ttl: float = 300.0
    deadline: float = 20.0
    hard_limit: float = 120.0
    lease: float = 15.0
    grace: float = 3.0
    retry_after: int = 1
    prefix: str = "workerless:"
    near_ttl: float = 1.0
    max_computations: int = 1000
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    stale: float = 0.0
    stale_if_error: float = 0.0
    early_refresh: float = 1.0
    browser_ttl: float = 0.0
    metrics_path: str = ""  # "" (the default): no metrics endpoint
    stats_path: str = ""  # "" (the default): no JSON statistics endpoint

    @classmethod
    def resolve(cls, keywords: Mapping[str, Any], environ: Mapping[str, str] | None) -> Settings:
        """Keywords win over ``WORKERLESS_*`` variables of ``environ``, which win over defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.__dataclass_fields__.items():
            variable = f"WORKERLESS_{name.upper()}"
            if keywords.get(name) is not None:
                values[name] = check_keyword(name, keywords[name], f"{name}=")
            elif variable in env:
                values[name] = _convert(name, field.default, env[variable], variable)
        paths = [values[name] for name in ("metrics_path", "stats_path") if name in values]
        if len(paths) == 2 and paths[0] == paths[1]:
            raise ConfigurationError(f"metrics_path and stats_path are both {paths[0]!r}")
        return cls(**values)


def check_keyword(name: str, value: Any, source: str) -> Any:
    """``value`` given in code for setting ``name``, checked by the rules of its variable.

    A number setting takes an int or a float, finite and positive (or zero, for the settings
    where zero means "off"), else ConfigurationError (a ValueError); a string or a bool is a
    TypeError, since only environment variables are parsed.  ``source`` names the argument in
    the message, e.g. ``"deadline="``.
    """
    default = Settings.__dataclass_fields__[name].default
    if not isinstance(default, str) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise TypeError(f"{source} must be a number, not {value!r}")
    return _convert(name, default, value, source)


def _convert(name: str, default: Any, value: Any, source: str) -> Any:
    if isinstance(default, str):
        if isinstance(value, Store) and name == "store":
            return value
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{source} must be a non-empty string, not {value!r}")
        if name.endswith("_path") and not (value.startswith("/") and value.isprintable()):
            raise ConfigurationError(f"{source} must be a path starting with /, not {value!r}")
        return value
    kind = type(default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and name not in _ZERO_ALLOWED):
        wanted = "0 or a positive number" if name in _ZERO_ALLOWED else "a positive number"
        raise ConfigurationError(f"{source} must be {wanted}, not {value!r}")
    if name == "lease" and number > MAX_LEASE:  # stores break longer leases as foreign
        raise ConfigurationError(f"{source} must be at most {MAX_LEASE:g} s, not {value!r}")
    return number


def store_from_url(
    url: str,
    *,
    prefix: str = "workerless:",
    near_ttl: float = 1.0,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> Store:
    """Build the store a URL names: ``memory://`` (``?max_entries=&max_bytes=&max_value_bytes=``)
    or Redis.

    ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` (a master that Redis
    Sentinel names) and ``redis+cluster://`` (a Redis Cluster) URLs make a `RedisStore` whose
    keys all start with ``prefix``, serving hits from a near cache for ``near_ttl`` seconds
    (0: never).  No store keeps or serves a value over ``max_value_bytes`` (a query field of
    memory:// wins).
    """
    parts = urlsplit(url)
    if parts.scheme == "memory":
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"max_entries", "max_bytes", "max_value_bytes"}
        if unknown or parts.netloc or parts.path:
            raise ConfigurationError(
                f"store URL {url!r}: memory:// takes only "
                "?max_entries=N&max_bytes=N&max_value_bytes=N"
            )
        try:
            bounds = {"max_value_bytes": max_value_bytes}
            bounds.update({k: int(v) for k, v in options.items()})
            return MemoryStore(**bounds)
        except ValueError as exc:
            raise ConfigurationError(f"store URL {url!r}: {exc}") from None
    if parts.scheme in ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
        from ._redis import RedisStore

        return RedisStore(url, prefix=prefix, near_ttl=near_ttl, max_value_bytes=max_value_bytes)
    raise ConfigurationError(
        f"store URL {redact_url(url)!r}: expected memory://, redis://, rediss://, unix://, "
        "redis+sentinel:// or redis+cluster://"
    )


def configure_cacher(cacher: Cacher[Any], settings: Settings) -> None:
    """Give a cacher that is not running the store and limits ``settings`` name."""
    store = settings.store
    cacher.store = (
        store
        if isinstance(store, Store)
        else store_from_url(
            store,
            prefix=settings.prefix,
            near_ttl=settings.near_ttl,
            max_value_bytes=settings.max_value_bytes,
        )
    )
    cacher.ttl = settings.ttl
    cacher.hard_limit = settings.hard_limit
    cacher.lease = settings.lease
    cacher.grace = settings.grace
    cacher.max_computations = settings.max_computations
    cacher.stale = settings.stale
    cacher.stale_if_error = settings.stale_if_error
    cacher.early_refresh = settings.early_refresh
