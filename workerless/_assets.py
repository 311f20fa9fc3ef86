"""Where the client script, styles and templates are: inside the wheel, or beside the package."""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR", "TEMPLATES_DIR"]

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    # A wheel carries them inside the package (hatch force-include); a checkout beside it.
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"workerless is installed without its {name}/ folder")


STATIC_DIR = _locate("static")
TEMPLATES_DIR = _locate("templates")
