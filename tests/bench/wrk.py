"""Debian's ``wrk``: run it against a URL and read its report (with ``--latency``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["WrkResult", "parse", "run"]

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles in seconds, and what went wrong."""

    requests: int
    seconds: float
    rate: float
    p50: float
    p75: float
    p90: float
    p99: float
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse(output: str) -> WrkResult:
    """Read wrk's report; raise ValueError if it is not one (wrk failed to run)."""
    percentiles = {m[1]: float(m[2]) * _UNITS[m[3]] for m in _PERCENTILE.finditer(output)}
    requests, rate = _REQUESTS.search(output), _RATE.search(output)
    if requests is None or rate is None or len(percentiles) != 4:
        raise ValueError(f"not a wrk --latency report:\n{output}")
    socket = _SOCKET.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=int(requests[1]),
        seconds=float(requests[2]) * _UNITS[requests[3]],
        rate=float(rate[1]),
        p50=percentiles["50"],
        p75=percentiles["75"],
        p90=percentiles["90"],
        p99=percentiles["99"],
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
    )


def run(url: str, *, seconds: float, connections: int, threads: int = 1) -> WrkResult:
    """Run ``wrk --latency`` for ``seconds`` with ``connections`` open; return its figures."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    command = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return parse(done.stdout)
