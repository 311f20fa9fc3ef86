"""Real servers for the tests: redis-server, hypercorn and nginx, on free ports of 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class RedisServer:
    """A real redis-server process started for the tests, which can be stopped and restarted."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Hypercorn:
    """A real ``hypercorn --worker-class trio`` process serving ``app`` on a free port."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


@contextmanager
def hypercorn(
    app: str,
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    port: int | None = None,
) -> Iterator[Hypercorn]:
    """Start hypercorn on ``port`` (default: a free one) in its own process group; stop it after."""
    port = port or free_port()
    log = log_dir / f"hypercorn-{port}.log"
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hypercorn",
                "--worker-class",
                "trio",
                "--bind",
                f"127.0.0.1:{port}",
                *args,
                app,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=ROOT,
            start_new_session=True,
        )
    server = Hypercorn(proc, port, log)
    try:
        wait_for_port(port, proc=proc)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@asynccontextmanager
async def serve_in_process(app: Any, *, graceful_timeout: float = 1.0) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn in the caller's trio run on 127.0.0.1 port 0; yield its URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = graceful_timeout
    config.backlog = 1024
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield binds[0]
        finally:
            stop.set()


NGINX = Path("/usr/sbin/nginx")
_NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
}}
"""


def readme_nginx_blocks(heading: str) -> list[str]:
    """The ```nginx blocks of the README's section ``## heading``, as written there."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```nginx\n(.*?)```", section, re.S)


@dataclass
class Nginx:
    """A real Debian nginx in the foreground, with its pid, logs and temp files in ``directory``."""

    proc: subprocess.Popen[bytes]
    directory: Path

    @property
    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""


@contextmanager
def nginx(http: str, directory: Path, *, ports: Sequence[int]) -> Iterator[Nginx]:
    """Run nginx with ``http`` (upstream and server blocks) inside its ``http {}`` context.

    ``http`` must listen on 127.0.0.1 only, on the ``ports`` given (take them from `free_port`);
    this returns once nginx accepts on every one of them, and stops nginx (SIGTERM) after.
    """
    if not NGINX.exists():
        raise RuntimeError(f"no {NGINX}: apt-get install -y nginx")
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=directory, http=http))
    log = directory / "stderr.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(NGINX),
                "-p",
                str(directory),
                "-e",
                str(directory / "error.log"),
                "-c",
                str(conf),
                "-g",
                "daemon off;",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for port in ports:
            wait_for_port(port, proc=proc)
        yield Nginx(proc, directory)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@contextmanager
def fragment_worker(
    app: str,
    log_dir: Path,
    queues: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """A fragment worker process (``workerless._remote_worker app --queue ...``), stopped with
    SIGTERM after (killed if it does not stop within 10 s)."""
    log = log_dir / f"worker-{os.urandom(3).hex()}.log"
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **(env or {})}
    command = [sys.executable, "-m", "workerless._remote_worker", app]
    for queue in queues:
        command += ["--queue", queue]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, *args], stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=ROOT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
