"""The ``workerless`` logger, whose every record carries the key and route it concerns.

Each record has ``workerless_key`` and ``workerless_route`` attributes (``""`` when a line
concerns no key or no route), so a handler can filter or format on them:
``%(workerless_route)s``, or a JSON formatter's extra fields.
"""

from __future__ import annotations

import logging

__all__ = ["KEY", "ROUTE", "fields", "logger"]

KEY = "workerless_key"
ROUTE = "workerless_route"

logger = logging.getLogger("workerless")


def fields(key: str = "", route: str = "") -> dict[str, str]:
    """The ``extra=`` of a log line about ``key`` (served on route rule ``route``)."""
    return {KEY: key, ROUTE: route}


class _Defaults(logging.Filter):
    """Gives a record logged without ``extra=fields(...)`` empty fields, so formats never fail."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, KEY):
            setattr(record, KEY, "")
        if not hasattr(record, ROUTE):
            setattr(record, ROUTE, "")
        return True


if not any(isinstance(f, _Defaults) for f in logger.filters):
    logger.addFilter(_Defaults())
