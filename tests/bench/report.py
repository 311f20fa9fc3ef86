"""The benchmark's one table (markdown) and its JSON, and the figures' formatting."""

from __future__ import annotations

import math
import os
import platform
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "Rows", "Step", "log", "machine", "markdown", "ms", "summary", "times"]

COLUMNS = ("#", "Scenario", "Store", "workerless", "Alternative", "Comparison")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a figure of workerless beside the alternative's, same run."""

    scenario: str
    title: str
    store: str
    workerless: str
    alternative: str
    comparison: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def log(message: str) -> None:
    """Progress, on stderr: stdout carries the table alone."""
    print(message, file=sys.stderr, flush=True)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, median, 99th percentile (nearest rank) and maximum of ``values``."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": rank(50),
        "p99": rank(99),
        "max": ordered[-1],
    }


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if abs(seconds) >= 10:
        return f"{seconds:.1f} s"
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    if abs(seconds) >= 0.001:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.2f} ms"


def times(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "n/a"
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = (
            row.scenario,
            row.title,
            row.store,
            row.workerless,
            row.alternative,
            row.comparison,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


Step = Callable[[], tuple[dict[str, Any], Row]]


class Rows:
    """The rows of a scenario made of independent parts: a part that raises is reported as
    failed (its message goes to ``result["failures"]``) and the other parts still run."""

    def __init__(self, scenario: str, store: str, label: str) -> None:
        self.scenario, self.store, self.label = scenario, store, label
        self.result: dict[str, Any] = {}
        self.rows: list[Row] = []
        self.failures: list[str] = []

    def run(self, name: str, step: Step) -> None:
        log(f"  {self.label}: {name}")
        try:
            figures, row = step()
        except Exception as exc:  # one broken row must not hide the others' figures
            traceback.print_exc()
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            figures = {"error": self.failures[-1]}
            row = Row(self.scenario, name, self.store, "failed", "", str(exc)[:80])
        self.result[name] = figures
        self.rows.append(row)

    def outcome(self) -> tuple[dict[str, Any], list[Row]]:
        """The scenario's figures (with its ``failures``, empty if none) and its rows."""
        self.result["failures"] = self.failures
        return self.result, self.rows
