"""Scenario 6, reliability: each fault of issue 9 set off against real servers, and what the
clients saw.

One row per fault, each against the goal it should meet.  A fault the code does not (yet)
survive is a figure (a 502, a 202, a wait of a whole lease), never a crash of the bench.  The
rows that need Redis (a killed lease holder, a killed redis-server, planted data) run only
when the scenario runs on the Redis store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis as redis_py
from servers import redis_server

# The stored layout as the planted-data tests write it: one source for what a planter writes.
from test_planted import entry

from workerless._redis_keys import KeyLayout

from .procs import Answer, AppServer, app_servers, run_client
from .report import Row, Rows, ms, summary
from .scenarios import Outcome, Sizes, hold

__all__ = ["reliability"]

PREFIX = "workerless:"  # the servers' default WORKERLESS_PREFIX
CAP = 50
# Planted rows answer within this many seconds, whatever happens: a key nobody computes
# (a foreign lease not broken) then answers its 202 instead of holding the run.
FAULT_DEADLINE = 8.0
HOLDER_LEASE = 2.0
REDIS_KILL_COMPUTATION = 3.0


def reliability(store: str, store_url: str, sizes: Sizes, nonce: str, log_dir: Path) -> Outcome:
    """Every fault row on ``store`` (on memory, only those that need no Redis).

    A row that raises is reported as failed (its message goes to ``result["failures"]``)
    and the other rows still run.
    """
    redis = store == "redis"
    rows = Rows("6", store, "reliability")

    # One pair of servers for the rows that fit together: the cap and the deadline are set
    # low, a prefix of their own keeps planted data away from the other scenarios' keys.
    env = {
        "WORKERLESS_MAX_COMPUTATIONS": str(CAP),
        "WORKERLESS_DEADLINE": str(FAULT_DEADLINE),
        "WORKERLESS_PREFIX": f"bench-{nonce}:",
    }
    with app_servers(2, store_url, log_dir, env) as pair:
        rows.run("stampede", lambda: _stampede(pair, store, sizes, nonce))
        rows.run("cap", lambda: _cap(pair[0], store, sizes, nonce))
        if redis:
            rows.run(
                "planted", lambda: _planted(pair[0], store_url, env["WORKERLESS_PREFIX"], nonce)
            )
    rows.run("held", lambda: _held(store, store_url, sizes, nonce, log_dir))
    if redis:
        rows.run("holder killed", lambda: _holder_killed(store_url, nonce, log_dir))
        rows.run("redis killed", lambda: _redis_killed(sizes, nonce, log_dir))
    return rows.outcome()


def _verdict(met: bool, misses: str = "") -> str:
    return "goal met" if met else f"goal NOT met{': ' + misses if misses else ''}"


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,}× {status}" for status, n in sorted(counts.items())) or "none"


class Pending:
    """A GET running in a thread of its own: its answer (or error) and when it ended."""

    def __init__(self, server: AppServer, path: str, timeout: float) -> None:
        self.answer: Answer | None = None
        self.error: str | None = None
        self.ended: float | None = None
        self._thread = threading.Thread(
            target=self._fetch, args=(server, path, timeout), daemon=True
        )
        self._thread.start()

    def _fetch(self, server: AppServer, path: str, timeout: float) -> None:
        try:
            self.answer = server.fetch(path, timeout=timeout)
        except Exception as exc:  # a killed server's connection reset is an outcome here
            self.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self.ended = time.monotonic()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"no answer within {timeout} s")


def _wait_computing(server: AppServer, key: str, timeout: float = 15) -> None:
    """Return once ``server`` has started computing ``key``."""
    give_up = time.monotonic() + timeout
    while server.computations(key) < 1:
        if time.monotonic() > give_up:
            raise TimeoutError(f"{key} was not computed on {server.url} within {timeout} s")
        time.sleep(0.02)


def _computed_by(answer: Answer | None) -> int | None:
    if answer is None or answer.status != 200:
        return None
    return int(json.loads(answer.body)["pid"])


# -- the rows ----------------------------------------------------------------------------


def _stampede(
    servers: Sequence[AppServer], store: str, sizes: Sizes, nonce: str
) -> tuple[dict[str, Any], Row]:
    n, key = sizes.fault_stampede, f"fault-stampede-{nonce}"
    out = run_client(
        {
            "kind": "stampede",
            "ports": [s.port for s in servers],
            "n": n,
            "target": f"/wl/{key}?t=1",
        },
        timeout=180,
    )
    computations = sum(s.computations(key) for s in servers)
    # MemoryStore is per process: each process computes once. Redis: one in all.
    expected = 1 if store == "redis" else len(servers)
    figures = {
        "requests": n,
        "processes": len(servers),
        "computations": computations,
        "expected_computations": expected,
        "statuses": out["statuses"],
        "errors": out["errors"][:5],
        "latency": summary(out["latencies"]),
    }
    met = computations == expected and out["statuses"] == {"200": n}
    row = Row(
        "6",
        f"Reliability, stampede: {n:,} concurrent requests for one cold key (1 s computation) "
        f"on {len(servers)} server processes",
        store,
        f"{computations} computation{'s' * (computations != 1)}; {_statuses(out['statuses'])}"
        + (f"; {len(out['errors'])} errors" if out["errors"] else "")
        + f"; p99 {ms(figures['latency']['p99'])}",
        f"goal: {expected} computation{'s' * (expected != 1)}"
        f"{' (one per process)' if expected > 1 else ''}, all 200",
        _verdict(met),
    )
    return figures, row


def _cap(server: AppServer, store: str, sizes: Sizes, nonce: str) -> tuple[dict[str, Any], Row]:
    n, seconds = sizes.cap_requests, sizes.cap_seconds
    probe = f"/wl/cap-hit-{nonce}?t=0"
    server.request(probe)
    out = run_client(
        {
            "kind": "burst",
            "port": server.port,
            "n": n,
            "target": f"/wl/cap-{nonce}-{{i}}?t={seconds}",
            "probe": probe,
            "probe_every": 0.05,
        },
        timeout=120 + seconds,
    )
    probes = out["probes"]
    rejected = out["latencies"].get("503", [])
    figures = {
        "cap": CAP,
        "requests": n,
        "seconds": seconds,
        "statuses": out["statuses"],
        "errors": out["errors"][:5],
        "computations": server.computations(f"cap-{nonce}-"),
        "rejected_latency": summary(rejected),
        "hit_latency": summary([p["latency"] for p in probes]),
        "hit_statuses": _count(str(p.get("status", "error")) for p in probes),
    }
    hits = figures["hit_latency"]
    met = (
        len(rejected) == n - CAP
        and figures["computations"] == CAP
        and figures["hit_statuses"] == {"200": len(probes)}
    )
    row = Row(
        "6",
        f"Reliability, cap: WORKERLESS_MAX_COMPUTATIONS={CAP}, {n} requests at once for "
        f"distinct keys of a {seconds:g} s fragment; a hit on another key every 50 ms meanwhile",
        store,
        f"{len(rejected)} answered 503 (p99 {ms(figures['rejected_latency']['p99'])}), "
        f"{figures['computations']} computed; {_statuses(out['statuses'])}; "
        f"{hits['n']} hits meanwhile: p50 {ms(hits['p50'])}, p99 {ms(hits['p99'])}",
        f"goal: {n - CAP} 503 at once, {CAP} computations, hits served meanwhile",
        _verdict(met),
    )
    return figures, row


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _planted(
    server: AppServer, store_url: str, prefix: str, nonce: str
) -> tuple[dict[str, Any], Row]:
    planter = redis_py.Redis.from_url(store_url, socket_timeout=10)
    other = f"/wl/planted-{nonce}-other"
    server.request(other)  # cached: the wrong-type row looks at it afterwards
    keys = KeyLayout(prefix)

    def value(data: bytes) -> Callable[[str], object]:
        return lambda key: planter.set(keys.value(key), data, px=600_000)

    # Each: a name, what is planted, how it is planted for a key.  The destructive ones
    # last: before its fix, a bad epoch fails every miss afterwards.
    plants: list[tuple[str, str, Callable[[str], object]]] = [
        ("garbage", "garbage bytes", value(b"\x00\xff garbage \x80")),
        ("status", "status 99999", value(entry(99999, []))),
        ("crlf", "CRLF in a header", value(entry(200, [["X-Evil", "a\r\nSet-Cookie: s=1"]]))),
        ("cookie", "Set-Cookie", value(entry(200, [["Set-Cookie", "s=1"], ["X-Ok", "1"]]))),
        (
            "lease",
            "foreign lease (1 h)",
            lambda key: planter.set(keys.lease(key), "x", px=3_600_000),
        ),
        ("type", "RPUSH on the value", lambda key: planter.rpush(keys.value(key), "a")),
        ("epoch", "SET epoch x", lambda key: planter.set(keys.epoch(key), "x")),
    ]
    figures: dict[str, Any] = {}
    cells: list[str] = []
    misses: list[str] = []
    for slug, label, plant in plants:
        key = f"/wl/planted-{nonce}-{slug}"
        plant(key)
        try:
            answer = server.fetch(key, timeout=FAULT_DEADLINE + 30)
        except OSError as exc:  # a server that crashed or hung is a figure too
            figures[slug] = {"planted": label, "status": None, "error": f"{exc!r}"[:200]}
            cells.append(f"{label} → no answer ({type(exc).__name__})")
            misses.append(label)
            continue
        leaked = sorted({"set-cookie", "x-evil"} & set(answer.headers))
        # A well-formed planted entry may be served as it is (the Set-Cookie one): anyone
        # with write access can choose a body.  The broken ones must be computed afresh.
        served_planted = answer.body == b"planted"
        figure: dict[str, Any] = {
            "planted": label,
            "status": answer.status,
            "seconds": answer.seconds,
            "cache_status": answer.headers.get("cache-status"),
            "leaked_headers": leaked,
            "served_planted_body": served_planted,
        }
        good = answer.status == 200 and not leaked and (slug == "cookie" or not served_planted)
        if slug == "type":  # its old symptom: every other key of the process lost Redis
            after = server.fetch(other, timeout=30)
            figure["other_key_cache_status"] = after.headers.get("cache-status")
            good = good and "store-unavailable" not in (figure["other_key_cache_status"] or "")
        figures[slug] = figure
        text = f"{label} → {answer.status}"
        if served_planted:
            text += " (planted body)" if slug == "cookie" else " serving the planted body"
        if leaked:
            text += f" sending {', '.join(leaked)}"
        if answer.seconds >= 1:
            text += f" after {ms(answer.seconds)}"
        if "store-unavailable" in (figure.get("other_key_cache_status") or ""):
            text += " (other keys: store-unavailable)"
        cells.append(text)
        if not good:
            misses.append(label)
    planter.delete(*keys.epochs)
    planter.close()
    row = Row(
        "6",
        "Reliability, planted data: a value written under the prefix by someone else, then "
        "the next request for it",
        "redis",
        "; ".join(cells),
        "goal: a correct 200 for each (no planted header sent)",
        _verdict(not misses, ", ".join(misses)),
    )
    return figures, row


def _held(
    store: str, store_url: str, sizes: Sizes, nonce: str, log_dir: Path
) -> tuple[dict[str, Any], Row]:
    n = sizes.fault_held
    with app_servers(1, store_url, log_dir) as (server,):
        figures = hold(server, f"/wl/fault-held-{nonce}-{{i}}?gate=1", n, nonce)
    figures["requests"] = n
    met = figures["answered"] == n
    row = Row(
        "6",
        f"Reliability, held: {n:,} requests held at once on one worker (distinct keys), "
        "then released",
        store,
        f"all held after {ms(figures['all_held_after_s'])}; "
        f"{figures['answered']:,}/{n:,} answered 200, all within "
        f"{ms(figures['all_answered_after_release_s'])} of the release; peak RSS "
        f"{figures['rss_peak'] / 2**20:,.0f} MiB",
        f"goal: all {n:,} answered",
        _verdict(met, _statuses(figures["statuses"])),
    )
    return figures, row


def _holder_killed(store_url: str, nonce: str, log_dir: Path) -> tuple[dict[str, Any], Row]:
    key = f"fault-orphan-{nonce}"
    path = f"/wl/{key}?gate=1"
    env = {"WORKERLESS_LEASE": str(HOLDER_LEASE)}
    with app_servers(2, store_url, log_dir, env) as (holder, heir):
        heir.release()  # the heir's computation ends at once: its answer shows the takeover
        doomed = Pending(holder, path, timeout=60)
        _wait_computing(holder, key)
        waiter = Pending(heir, path, timeout=60)
        time.sleep(0.5)  # the waiter is waiting on the holder's lease by now
        holder.handle.kill()
        killed = time.monotonic()
        with redis_py.Redis.from_url(store_url, socket_timeout=10) as client:
            # The bench's paths are their own keys (ASCII, one query field).
            remaining = int(client.pttl(KeyLayout(PREFIX).lease(path)))
        lease_end = time.monotonic() + remaining / 1000 if remaining > 0 else None
        waiter.wait(60)
        doomed.wait(10)
        new = heir.computations(key)
    assert waiter.ended is not None
    answer = waiter.answer
    past_lease = waiter.ended - lease_end if lease_end is not None else None
    figures = {
        "lease": HOLDER_LEASE,
        "status": answer.status if answer else None,
        "error": waiter.error,
        "lease_left_at_kill_s": remaining / 1000 if remaining > 0 else None,
        "answered_after_kill_s": waiter.ended - killed,
        "answered_past_lease_end_s": past_lease,
        "new_computations": new,
        "computed_by_heir": _computed_by(answer) == heir.pid,
    }
    met = (
        answer is not None
        and answer.status == 200
        and new == 1
        and past_lease is not None
        and past_lease <= 0.5
    )
    status = answer.status if answer else waiter.error
    row = Row(
        "6",
        f"Reliability, holder killed: the server computing a key SIGKILLed (lease "
        f"{HOLDER_LEASE:g} s); a request waiting on another server",
        "redis",
        f"{status} {ms(waiter.ended - killed)} after the kill, "
        + (f"{ms(past_lease)} past the lease's end" if past_lease is not None else "")
        + f"; {new} new computation{'s' * (new != 1)}",
        "goal: 200 within 0.5 s of the lease's end, one new computation",
        _verdict(met),
    )
    return figures, row


def _redis_killed(sizes: Sizes, nonce: str, log_dir: Path) -> tuple[dict[str, Any], Row]:
    key = f"fault-redis-{nonce}"
    path = f"/wl/{key}?t={REDIS_KILL_COMPUTATION:g}"
    lease = sizes.redis_kill_lease
    env = {"WORKERLESS_LEASE": f"{lease:g}"}
    with redis_server() as doomed_redis, app_servers(2, doomed_redis.url, log_dir, env) as pair:
        a, b = pair
        first = Pending(a, path, timeout=lease + 60)
        _wait_computing(a, key)
        time.sleep(0.5)
        second = Pending(b, path, timeout=lease + 60)
        time.sleep(0.5)  # b waits on a's computation now
        assert doomed_redis.proc is not None
        doomed_redis.proc.kill()
        killed = time.monotonic()
        doomed_redis.proc.wait(10)
        second.wait(lease + 60)
        first.wait(lease + 60)
        computations = a.computations(key) + b.computations(key)
    assert second.ended is not None
    answer = second.answer
    after = second.ended - killed
    figures = {
        "lease": lease,
        "computation_s": REDIS_KILL_COMPUTATION,
        "status": answer.status if answer else None,
        "error": second.error,
        "cache_status": answer.headers.get("cache-status") if answer else None,
        "answered_after_kill_s": after,
        "computed_by_waiter": _computed_by(answer) == b.pid,
        "computations": computations,
        "first_status": first.answer.status if first.answer else first.error,
    }
    met = answer is not None and answer.status == 200 and after <= REDIS_KILL_COMPUTATION + 1
    who = "itself" if figures["computed_by_waiter"] else "by the first server"
    row = Row(
        "6",
        f"Reliability, Redis killed: server B waits on server A's {REDIS_KILL_COMPUTATION:g} s "
        f"computation (lease {lease:g} s), redis-server SIGKILLed",
        "redis",
        f"B: {answer.status if answer else second.error} {ms(after)} after the kill, "
        f"computed {who}; {computations} computations in all",
        f"goal: about one computation ({REDIS_KILL_COMPUTATION:g} s), not the lease",
        _verdict(met),
    )
    return figures, row
