"""The benchmark's processes: the bench app's servers (started, queried, their memory and CPU
read from /proc) and the load client's runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import ROOT, Hypercorn, hypercorn

__all__ = [
    "Answer",
    "AppServer",
    "app_servers",
    "process_cpu",
    "process_memory",
    "run_client",
    "start_client",
]

APP = "bench.app:app"
# Generous limits: a benchmark measures waiting, it must never be cut short by a 202, nor by
# the cap on running computations (the held scenarios hold up to 10,000 distinct keys).
SERVER_ENV = {
    "WORKERLESS_DEADLINE": "600",
    "WORKERLESS_HARD_LIMIT": "900",
    "WORKERLESS_MAX_COMPUTATIONS": "20000",
}
CLIENT_ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names), body, and how long it took."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


@dataclass
class AppServer:
    """One ``hypercorn --worker-class trio`` serving the bench app; ``pid`` is its worker."""

    handle: Hypercorn
    pid: int

    @property
    def port(self) -> int:
        return self.handle.port

    @property
    def url(self) -> str:
        return self.handle.url

    def request(
        self, path: str, method: str = "GET", timeout: float = 30
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            return response.status, headers, response.read()

    def fetch(self, path: str, timeout: float = 30) -> Answer:
        """GET ``path`` whatever the status (a 5xx is an answer too), timed."""
        sent = time.monotonic()
        try:
            status, headers, body = self.request(path, timeout=timeout)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            headers = {name.lower(): value for name, value in exc.headers.items()}
        return Answer(status, headers, body, time.monotonic() - sent)

    def stats(self, prefix: str = "", timeout: float = 30) -> dict[str, Any]:
        """The worker's pid, its computations of keys starting with ``prefix``, held waits."""
        _, _, body = self.request(f"/bench/stats?prefix={prefix}", timeout=timeout)
        return dict(json.loads(body))

    def computations(self, prefix: str) -> int:
        return int(self.stats(prefix)["computations"])

    def release(self) -> None:
        self.request("/bench/release", method="POST")

    def memory(self) -> dict[str, int]:
        return process_memory(self.pid)


def process_memory(pid: int) -> dict[str, int]:
    """Resident set size now (``VmRSS``) and at its peak (``VmHWM``), in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user and system, all threads) ``pid`` has used so far; 0 for None."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


@contextmanager
def app_servers(
    count: int,
    store: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    app: str = APP,
) -> Iterator[list[AppServer]]:
    """Start ``count`` separate bench servers on ``store``; stop them all after the block.

    ``env`` adds or overrides ``WORKERLESS_*`` settings of the servers; ``app`` is another
    app to serve (it must answer ``GET /bench/stats`` with its ``pid``).
    """
    env = {**SERVER_ENV, "WORKERLESS_STORE": store, **(env or {})}
    with ExitStack() as stack, ThreadPoolExecutor(count) as pool:
        # Each start waits for its port: start them side by side.
        managers = [
            hypercorn(app, log_dir, env=env, args=("--backlog", "4096")) for _ in range(count)
        ]
        handles = list(pool.map(stack.enter_context, managers))
        started = []
        for handle in handles:
            server = AppServer(handle, pid=0)
            server.pid = int(server.stats()["pid"])
            # hypercorn runs the app in a child of its master even with one worker.
            if _parent_of(server.pid) != handle.proc.pid:
                raise RuntimeError(f"pid {server.pid} is not a worker of {handle.proc.pid}")
            started.append(server)
        yield started


def start_client(job: dict[str, Any]) -> subprocess.Popen[str]:
    """Start one job of the load client (``bench.client``) in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.client", json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=CLIENT_ENV,
    )


def run_client(job: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run one job of the load client to its end and return what it reports."""
    client = start_client(job)
    try:
        stdout, stderr = client.communicate(timeout=timeout)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if client.returncode != 0:
        raise RuntimeError(f"the load client failed on {job['kind']}:\n{stderr}")
    return dict(json.loads(stdout))
