"""Whether a fragment's HTML can be written as-is into a streamed page.

A streamed fragment is parsed as part of the page, not on its own as ``innerHTML`` parses a
fetched one: an element it leaves open would swallow the fragments after it, a stray end tag
would close its chunk (or the page) early.  `is_balanced` is conservative: HTML it refuses may
be fine in a browser, and is then only fetched on its own instead of written inline.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["is_balanced"]

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
# Elements whose end tag HTML lets out; the parser closes them, and nothing reopens them later.
OPTIONAL_END = frozenset(
    {"p", "li", "dt", "dd", "option", "optgroup", "rb", "rt", "rtc", "rp", "caption"}
    | {"tr", "td", "th", "tbody", "thead", "tfoot", "colgroup"}
)
# End tags a browser turns into an element of their own, closing nothing.
HARMLESS_STRAY = frozenset({"p", "br"})
FOREIGN = frozenset({"svg", "math"})
# An unfinished tag, comment or declaration at the end: it would eat the chunk's own end tag.
UNTERMINATED = re.compile(r"<[A-Za-z/!?]")


class _Balance(HTMLParser):
    """Tracks the open elements as a browser's parser would, closely enough to be safe."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open: list[str] = []
        self.broken = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # "<div/>" is an open <div> in HTML; only SVG and MathML elements close themselves.
        if not FOREIGN.intersection(self.open):
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.open:
            self.broken = self.broken or tag not in HARMLESS_STRAY
            return
        at = len(self.open) - 1 - self.open[::-1].index(tag)
        # Closing <b> by closing its parent leaves it to be reopened around what follows.
        if set(self.open[at + 1 :]) - OPTIONAL_END:
            self.broken = True
        del self.open[at:]


def is_balanced(html: str) -> bool:
    """True if ``html``, written inside an element, closes everything it opens and nothing else."""
    parser = _Balance()
    parser.feed(html)
    unterminated = parser.cdata_elem is not None or UNTERMINATED.match(parser.rawdata)
    return not (parser.broken or unterminated or set(parser.open) - OPTIONAL_END)
