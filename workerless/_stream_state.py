"""Which streamed page, if any, the current task is rendering (read by the fragment macro)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._page import Page

__all__ = ["current_page", "rendering"]

rendering: ContextVar[Page | None] = ContextVar("workerless_page", default=None)


def current_page() -> Page | None:
    """The page `stream_template` is rendering in this task; None for any other template."""
    return rendering.get()
