"""The queue service's settings, from keywords and ``WORKERLESS_QUEUE_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .._config import _convert
from .._errors import ConfigurationError

__all__ = ["QueueSettings"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Every setting of the queue service; see the README's "Queues" configuration rows.

    ``url`` is the Redis URL (``WORKERLESS_QUEUE_URL``, else ``WORKERLESS_STORE``); the API
    needs the bearer ``token`` unless ``open`` says it is open on purpose.
    """

    url: str = ""
    token: str = ""
    open: bool = False
    prefix: str = "workerless:"
    lease: float = 30.0
    max_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 300.0
    max_body: int = 1024 * 1024
    max_wait: float = 60.0

    @classmethod
    def resolve(
        cls, keywords: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> QueueSettings:
        """Keywords win over variables, which win over defaults; refuses what cannot work:
        no Redis URL, or no token while ``open`` is off (ConfigurationError)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            name = item.name
            variable = (
                "WORKERLESS_PREFIX" if name == "prefix" else f"WORKERLESS_QUEUE_{name.upper()}"
            )
            if keywords.get(name) is not None:
                raw, source = keywords[name], f"{name}="
            elif variable in env:
                raw, source = env[variable], variable
            elif name == "url" and env.get("WORKERLESS_STORE"):
                raw, source = env["WORKERLESS_STORE"], "WORKERLESS_STORE"
            else:
                continue
            values[name] = _check(name, item.default, raw, source)
        settings = cls(**values)
        if not settings.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                "the queue needs Redis: set WORKERLESS_QUEUE_URL (or WORKERLESS_STORE) to a "
                f"redis://, rediss:// or unix:// URL (got {settings.url[:40]!r})"
            )
        if not settings.token and not settings.open:
            raise ConfigurationError(
                "the queue API needs a bearer token: set WORKERLESS_QUEUE_TOKEN, or "
                "WORKERLESS_QUEUE_OPEN=1 to serve it to anyone who can reach it"
            )
        return settings


def _check(name: str, default: Any, raw: Any, source: str) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in _TRUE | _FALSE:
            raise ConfigurationError(f"{source} must be 1 or 0, not {raw!r}")
        return text in _TRUE
    if name == "token":
        if not isinstance(raw, str):
            raise ConfigurationError(f"{source} must be a string")
        return raw
    return _convert(name, default, raw, source)
