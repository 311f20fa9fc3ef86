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


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
    return binary


def _redis_process(args: Sequence[str], directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A redis-server (or sentinel) with ``args``, run in ``directory``, listening on ``port``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"redis-{port}.log").open("ab") as log:
        proc = subprocess.Popen(
            [_redis_binary(), *args], stdout=log, stderr=subprocess.STDOUT, cwd=directory
        )
    wait_for_port(port, proc=proc)
    return proc


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_until(check: Any, what: str, timeout: float = 30.0) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} after {timeout} s")
        time.sleep(0.1)


_PLAIN = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "notice")


@dataclass
class RedisCluster:
    """A real Redis Cluster of masters on free ports (client and bus), with no replicas."""

    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)


@contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[RedisCluster]:
    """Start ``masters`` cluster-enabled redis-servers and join them with redis-cli --cluster
    create; yield once every node reports cluster_state:ok; stop them after."""
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port() for _ in range(masters)]
    try:
        for port in ports:
            args = ["--port", str(port), "--cluster-enabled", "yes"]
            args += ["--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"]
            args += ["--cluster-config-file", f"nodes-{port}.conf", *_PLAIN]
            procs.append(_redis_process(args, directory, port))
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

        def ready() -> bool:
            for port in ports:
                info = subprocess.run(
                    ["redis-cli", "-p", str(port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                if "cluster_state:ok" not in info:
                    return False
            return True

        _wait_until(ready, "the cluster is not ok")
        yield RedisCluster(ports)
    finally:
        _stop(procs)


@dataclass
class SentinelSetup:
    """One master, one replica and one sentinel watching them as service ``service``."""

    master: subprocess.Popen[bytes]
    master_port: int
    replica_port: int
    sentinel_port: int
    service: str = "cache"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/0"

    def master_address(self) -> tuple[str, int]:
        """The master the sentinel names now."""
        command = ["sentinel", "get-master-addr-by-name", self.service]
        reply = subprocess.run(
            ["redis-cli", "-p", str(self.sentinel_port), *command],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.split()
        return reply[0], int(reply[1])


@contextmanager
def redis_sentinel(directory: Path) -> Iterator[SentinelSetup]:
    """A master, its replica (in sync) and a sentinel with a 1 s down-after; stopped after."""
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        master = _redis_process(["--port", str(master_port), *_PLAIN], directory, master_port)
        procs.append(master)
        replica_args = ["--port", str(replica_port), "--replicaof", "127.0.0.1", str(master_port)]
        procs.append(_redis_process([*replica_args, *_PLAIN], directory, replica_port))
        # A sentinel rewrites its config file: each run gets its own.
        conf = directory / f"sentinel-{sentinel_port}.conf"
        conf.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\n"
            f"sentinel monitor cache 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds cache 1000\n"
            "sentinel failover-timeout cache 5000\n"
        )
        procs.append(_redis_process([str(conf), "--sentinel"], directory, sentinel_port))

        def replica_synced() -> bool:
            info = subprocess.run(
                ["redis-cli", "-p", str(replica_port), "info", "replication"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            return "master_link_status:up" in info

        _wait_until(replica_synced, "the replica is not in sync")
        setup = SentinelSetup(master, master_port, replica_port, sentinel_port)

        def sentinel_sees_replica() -> bool:
            reply = subprocess.run(
                ["redis-cli", "-p", str(sentinel_port), "sentinel", "replicas", "cache"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            return str(replica_port) in reply

        _wait_until(sentinel_sees_replica, "the sentinel does not know the replica")
        yield setup
    finally:
        _stop(procs)


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
    """A fragment worker process (``workerless worker app --queue ...``), stopped with
    SIGTERM after (killed if it does not stop within 10 s)."""
    log = log_dir / f"worker-{os.urandom(3).hex()}.log"
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **(env or {})}
    command = [sys.executable, "-m", "workerless", "worker", app]
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
