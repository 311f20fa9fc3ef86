"""Settings from keywords and the environment, resolved when the app starts."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._errors import ConfigurationError
from ._memory import MemoryStore
from ._store import DEFAULT_MAX_VALUE_BYTES, MAX_LEASE, Store

__all__ = ["Settings", "store_from_url"]

DEFAULT_STORE = "memory://"
_ZERO_ALLOWED = frozenset({"retry_after", "near_ttl"})


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

    @classmethod
    def resolve(cls, keywords: Mapping[str, Any], environ: Mapping[str, str] | None) -> Settings:
        """Keywords win over ``WORKERLESS_*`` variables of ``environ``, which win over defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.__dataclass_fields__.items():
            if keywords.get(name) is not None:
                values[name] = keywords[name]
                source = f"{name}="
            elif f"WORKERLESS_{name.upper()}" in env:
                values[name] = env[f"WORKERLESS_{name.upper()}"]
                source = f"WORKERLESS_{name.upper()}"
            else:
                continue
            values[name] = _convert(name, field.default, values[name], source)
        return cls(**values)


def _convert(name: str, default: Any, value: Any, source: str) -> Any:
    if isinstance(default, str):
        if isinstance(value, Store) and name == "store":
            return value
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{source} must be a non-empty string, not {value!r}")
        return value
    kind = type(default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and name not in _ZERO_ALLOWED):
        raise ConfigurationError(f"{source} must be a positive number, not {value!r}")
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

    ``redis://``, ``rediss://`` and ``unix://`` URLs make a `RedisStore` whose keys all start
    with ``prefix``, serving hits from a near cache for ``near_ttl`` seconds (0: never).  No
    store keeps or serves a value over ``max_value_bytes`` (a query field of memory:// wins).
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
    if parts.scheme in ("redis", "rediss", "unix"):
        from ._redis import RedisStore

        return RedisStore(url, prefix=prefix, near_ttl=near_ttl, max_value_bytes=max_value_bytes)
    raise ConfigurationError(
        f"store URL {url!r}: expected memory://, redis://, rediss:// or unix://"
    )
