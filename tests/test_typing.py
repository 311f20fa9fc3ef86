"""Typing as users see it: a typed app passes mypy --strict, and a wrong call is caught."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servers import ROOT

TYPED_APP = ROOT / "tests" / "apps" / "typed_app.py"
WRONG_CALL = """

async def wrong_call() -> None:
    await greeting(42)
"""


def test_typed_app_passes_mypy_strict_and_a_wrong_call_fails(tmp_path: Path) -> None:
    """mypy --strict accepts tests/apps/typed_app.py; calling its fragment with an int fails."""
    source = TYPED_APP.read_text()
    (tmp_path / "typed_app.py").write_text(source)
    (tmp_path / "wrong_app.py").write_text(source + WRONG_CALL)
    wrong_line = (source + WRONG_CALL).splitlines().index("    await greeting(42)") + 1
    # No config file: a user's app gets none of this repository's mypy settings.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file=", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), "typed_app.py", "wrong_app.py"],
        cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    errors = result.stdout.strip().splitlines()
    assert errors == [
        f'wrong_app.py:{wrong_line}: error: Argument 1 to "greeting" has incompatible type '
        '"int"; expected "str"  [arg-type]'
    ], result.stdout + result.stderr
