"""Settings: keywords over environment over defaults, read at start-up, with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from quart_trio import QuartTrio
from servers import ROOT, free_port

from workerless import ConfigurationError, MemoryStore, Settings, Workerless, store_from_url


def test_defaults() -> None:
    """With nothing set: memory store, ttl 300 s, deadline 20 s, hard limit 120 s."""
    settings = Settings.resolve({}, {})
    assert (settings.store, settings.ttl, settings.deadline, settings.hard_limit) == (
        "memory://",
        300.0,
        20.0,
        120.0,
    )


def test_environment_then_keywords() -> None:
    """WORKERLESS_* variables override defaults; keywords override both."""
    env = {"WORKERLESS_TTL": "30", "WORKERLESS_DEADLINE": "2.5", "WORKERLESS_STORE": "memory://"}
    settings = Settings.resolve({"ttl": 7}, env)
    assert (settings.ttl, settings.deadline) == (7.0, 2.5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKERLESS_TTL": "soon"}, "WORKERLESS_TTL must be a number"),
        ({"WORKERLESS_DEADLINE": "-1"}, "WORKERLESS_DEADLINE must be a positive number"),
        ({"WORKERLESS_HARD_LIMIT": "nan"}, "WORKERLESS_HARD_LIMIT must be a positive number"),
        ({"WORKERLESS_STORE": ""}, "WORKERLESS_STORE must be a non-empty string"),
        ({"WORKERLESS_LEASE": "7200"}, "WORKERLESS_LEASE must be at most 3600 s"),
        ({"WORKERLESS_MAX_VALUE_BYTES": "0"}, "WORKERLESS_MAX_VALUE_BYTES must be a positive"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    """A bad value is refused with the variable's name and the value."""
    with pytest.raises(ConfigurationError, match=message):
        Settings.resolve({}, env)


def test_store_urls() -> None:
    """memory:// takes bounds; unknown schemes and options are refused clearly."""
    store = store_from_url("memory://?max_entries=5&max_bytes=1000")
    assert isinstance(store, MemoryStore)
    assert (store.max_entries, store.max_bytes) == (5, 1000)
    with pytest.raises(ConfigurationError, match="expected memory://"):
        store_from_url("memcached://localhost")
    with pytest.raises(ConfigurationError, match="max_entries"):
        store_from_url("memory://?size=3")


async def test_environment_is_read_when_the_app_starts_not_at_import() -> None:
    """Changing the environment after Workerless(app) but before start-up takes effect."""
    env: dict[str, str] = {}
    app = QuartTrio(__name__)
    workerless = Workerless(app, environ=env)
    env["WORKERLESS_TTL"] = "42"
    env["WORKERLESS_STORE"] = "memory://?max_entries=3"
    env["WORKERLESS_MAX_VALUE_BYTES"] = "1000"
    with trio.fail_after(5):
        async with app.test_app():
            assert workerless.cacher.ttl == 42.0
            assert isinstance(workerless.cacher.store, MemoryStore)
            assert workerless.cacher.store.max_entries == 3
            assert workerless.cacher.store.max_value_bytes == 1000


def start_up_log(tmp_path: Path, **variables: str) -> str:
    """Run a real hypercorn whose start-up must fail; return what it logged."""
    log = tmp_path / "hypercorn.log"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **variables}
    with log.open("wb") as out:
        # Returning within the timeout is the stop; `python -m hypercorn` exits 0 even then.
        subprocess.run(
            [sys.executable, "-m", "hypercorn", "--worker-class", "trio",
             "--bind", f"127.0.0.1:{free_port()}", "apps.contract_app:app"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=30, check=False,
        )  # fmt: skip
    return log.read_text()


def test_bad_environment_stops_the_server_at_start_up(tmp_path: Path) -> None:
    """A real hypercorn with a bad variable exits at start-up, naming the variable."""
    log = start_up_log(tmp_path, WORKERLESS_DEADLINE="never")
    assert "WORKERLESS_DEADLINE must be a number, not 'never'" in log


def test_unreachable_redis_stops_the_server_at_start_up_naming_the_url(tmp_path: Path) -> None:
    """WORKERLESS_STORE pointing at no Redis stops start-up with the URL, password hidden."""
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    log = start_up_log(tmp_path, WORKERLESS_STORE=url)
    assert url.replace("hunter2", "***") in log
    assert "hunter2" not in log
