"""The package as users get it: its public names, and a wheel that serves the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest
from servers import ROOT, free_port, wait_for_port

import workerless


def test_public_surface_is_exactly_all() -> None:
    """Every public name of the package is in __all__, and everything in __all__ exists."""
    public = {name for name in dir(workerless) if not name.startswith("_")}
    public -= {"testing", "demo", "queue"}  # public submodules, imported on demand
    assert public == set(workerless.__all__) - {"__version__"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(out), str(ROOT)],
        check=True, timeout=120,
    )  # fmt: skip
    (found,) = out.glob("workerless-*.whl")
    return found


def test_wheel_ships_static_and_templates(wheel: Path) -> None:
    """The wheel carries every static file and template inside the package, no screenshot."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"workerless/{path.relative_to(ROOT).as_posix()}"
        for folder in ("static", "templates")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "screenshots" not in path.parts
    }
    assert "workerless/static/workerless.js" in shipped
    assert "workerless/templates/workerless/macros.html" in shipped
    assert shipped <= names
    assert "workerless/py.typed" in names
    assert not any("screenshots" in name for name in names)


def test_wheel_ships_the_license(wheel: Path) -> None:
    """The wheel's metadata carries the MIT LICENSE file and names it."""
    with zipfile.ZipFile(wheel) as archive:
        info = f"{wheel.name.split('-')[0]}-{workerless.__version__}.dist-info"
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Copyright (c) 2026 The workerless developers" in license_text
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata


def test_sdist_ships_the_license(tmp_path: Path) -> None:
    """The source distribution carries the LICENSE file at its top level."""
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "--target", "sdist", "-d", str(tmp_path)],
        cwd=ROOT, check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (sdist,) = tmp_path.glob("workerless-*.tar.gz")
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        license_file = archive.extractfile(f"{top}/LICENSE")
        assert license_file is not None
        assert license_file.read().decode() == (ROOT / "LICENSE").read_text()


def test_installed_wheel_serves_the_demo_outside_the_repo(
    wheel: Path, tmp_path: Path
) -> None:
    """pip install of the wheel into a fresh venv, run from elsewhere, serves page and script."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=120,
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [python, "-m", "hypercorn", "--worker-class", "trio", "--bind", f"127.0.0.1:{port}",
         "workerless.demo:app"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            page = client.get("/")
            script = client.get("/workerless/static/workerless.js")
        where = subprocess.run(
            [python, "-c", "import workerless; print(workerless.__file__)"],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(15)
    assert page.status_code == 200
    assert page.text.count("data-fragment=") == 7
    assert script.status_code == 200
    assert "workerless:load" in script.text
    assert str(venv) in where.stdout
