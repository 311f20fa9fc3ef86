"""The load client: a trio process with raw HTTP/1.1 connections (h11) and per-request detail.

Run as ``python -m bench.client JOB`` with the job as JSON; prints a JSON result on stdout.
h11 over trio sockets costs far less CPU per request than a full client, and this machine's
cores are shared with the servers being measured.  Jobs:

- ``stampede``: open ``n`` connections spread over ``ports`` and warm each one, then send one
  request per connection at the same instant; report statuses and latencies.
- ``timeline``: fetch each item at its start offset, held or polling every ``poll`` seconds
  while the answer is 202; report how long after the computation ended each answer arrived.
- ``held``: open ``n`` connections and send a request on each; report how they were answered.
- ``wakeup``: for each key, a request to the first port then, ``lag`` later, ``waiters``
  requests to the port the key names; report when each answer arrived and the computation
  it carries.
- ``hammer``: ``n`` keep-alive connections spread over ``ports`` each request ``target``
  again and again for ``seconds``; count the answers by Cache-Status (hit, stale, waited for
  a computation) and time the waits.
- ``reload``: fetch ``targets`` once on one connection, then again twice: without and with
  ``If-None-Match`` (each first answer's ETag); report each second round's bytes.
- ``burst``: send ``n`` requests (``target`` formatted with ``i``) at once, each on a new
  connection, while a prober times a request for ``probe`` on a new connection every
  ``probe_every`` seconds until the burst is all answered; report statuses and latencies.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

__all__ = ["Connection", "Reply"]

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Reply:
    """A response, when its request was sent and its last byte received (monotonic), its
    headers (lower-case names) and how many bytes it took on the wire."""

    status: int
    body: bytes
    sent: float
    received: float
    headers: dict[str, str] = field(default_factory=dict)
    raw_bytes: int = 0  # the response as received: status line, headers and body

    @property
    def computation(self) -> dict[str, Any]:
        """The JSON the bench app's computing routes answer: key, pid and ``done``."""
        return dict(json.loads(self.body))


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it are sent one after another."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(await trio.open_tcp_stream(HOST, port))

    async def send(self, target: str, headers: Sequence[tuple[str, str]] = ()) -> float:
        """Send a GET for ``target`` with ``headers`` besides Host; return when it was sent."""
        request = h11.Request(method="GET", target=target, headers=[("Host", HOST), *headers])
        data = b"".join(self.h11.send(e) or b"" for e in (request, h11.EndOfMessage()))
        sent = time.monotonic()
        await self.stream.send_all(data)
        return sent

    async def receive(self, sent: float) -> Reply:
        """Read the whole response to the request sent at ``sent``."""
        status = 0
        body = bytearray()
        headers: dict[str, str] = {}
        # Requests are never pipelined, so every byte read now belongs to this response.
        raw_bytes = 0
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                raw_bytes += len(data)
                self.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {n.decode().lower(): v.decode() for n, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                received = time.monotonic()
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection before answering")
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return Reply(status, bytes(body), sent, received, headers, raw_bytes)

    async def get(self, target: str, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        return await self.receive(await self.send(target, headers))

    async def aclose(self) -> None:
        await self.stream.aclose()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


async def stampede(job: dict[str, Any]) -> dict[str, Any]:
    ports, n, target = job["ports"], job["n"], job["target"]
    connections: list[Connection | None] = [None] * n
    errors: list[str] = []
    limiter = trio.CapacityLimiter(job.get("connect_concurrency", 100))

    async def connect(i: int) -> None:
        async with limiter:
            try:
                conn = await Connection.open(ports[i % len(ports)])
                await conn.get("/bench/stats")  # the server has accepted it and set it up
                connections[i] = conn
            except OSError as exc:
                errors.append(_error(exc))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(connect, i)

    go = trio.Event()
    replies: list[Reply] = []

    async def fire(conn: Connection) -> None:
        await go.wait()
        try:
            replies.append(await conn.get(target))
        except (OSError, ConnectionError, h11.ProtocolError) as exc:
            errors.append(_error(exc))

    async with trio.open_nursery() as nursery:
        for conn in connections:
            if conn is not None:
                nursery.start_soon(fire, conn)
        await trio.sleep(0.2)
        go.set()
    for conn in connections:
        if conn is not None:
            await conn.aclose()
    return {
        "statuses": dict(Counter(str(r.status) for r in replies)),
        "latencies": [r.received - r.sent for r in replies],
        "errors": errors,
    }


async def timeline(job: dict[str, Any]) -> dict[str, Any]:
    port, poll = job["port"], job["poll"]
    results: list[dict[str, Any]] = []
    start = trio.current_time()

    async def fetch(item: dict[str, Any]) -> None:
        await trio.sleep_until(start + item["at"])
        result: dict[str, Any] = {"pattern": item["pattern"], "requests": 0}
        try:
            conn = await Connection.open(port)
            try:
                while True:
                    reply = await conn.get(item["target"])
                    result["requests"] += 1
                    if reply.status != 202 or item["pattern"] != "poll":
                        break
                    await trio.sleep(poll)
            finally:
                await conn.aclose()
            result["status"] = reply.status
            if reply.status == 200:
                result["delay"] = reply.received - reply.computation["done"]
        except (OSError, ConnectionError, h11.ProtocolError) as exc:
            result["error"] = _error(exc)
        results.append(result)

    async with trio.open_nursery() as nursery:
        for item in job["items"]:
            nursery.start_soon(fetch, item)
    return {"results": results}


async def held(job: dict[str, Any]) -> dict[str, Any]:
    port, n, target = job["port"], job["n"], job["target"]
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    limiter = trio.CapacityLimiter(job.get("connect_concurrency", 200))
    sent: list[float] = []

    async def hold(i: int) -> None:
        try:
            async with limiter:
                conn = await Connection.open(port)
                started = await conn.send(target.format(i=i))
                sent.append(started)
            try:
                reply = await conn.receive(started)
            finally:
                await conn.aclose()
            statuses[str(reply.status)] += 1
        except (OSError, ConnectionError, h11.ProtocolError) as exc:
            errors.append(_error(exc))

    begin = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(hold, i)
    return {
        "statuses": dict(statuses),
        "errors": errors,
        "all_sent_after": (max(sent) - begin) if sent else None,
    }


async def wakeup(job: dict[str, Any]) -> dict[str, Any]:
    first = job["ports"][0]
    results: list[dict[str, Any]] = []
    start = trio.current_time()

    async def one(port: int, target: str, role: str) -> None:
        try:
            conn = await Connection.open(port)
            try:
                reply = await conn.get(target)
            finally:
                await conn.aclose()
        except (OSError, ConnectionError, h11.ProtocolError) as exc:
            results.append({"port": port, "role": role, "error": _error(exc)})
            return
        entry: dict[str, Any] = {"port": port, "role": role, "status": reply.status}
        if reply.status == 200:
            computed = reply.computation
            entry |= {"pid": computed["pid"], "delay": reply.received - computed["done"]}
        results.append(entry)

    async def group(i: int, target: str, port: int) -> None:
        await trio.sleep_until(start + i * job["spacing"])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, first, target, "starter")
            await trio.sleep(job["lag"])
            for _ in range(job["waiters"]):
                nursery.start_soon(one, port, target, "waiter")

    async with trio.open_nursery() as nursery:
        for i, (target, port) in enumerate(job["targets"]):
            nursery.start_soon(group, i, target, port)
    return {"results": results}


async def burst(job: dict[str, Any]) -> dict[str, Any]:
    port, n, target = job["port"], job["n"], job["target"]
    latencies: dict[str, list[float]] = {}
    probes: list[dict[str, Any]] = []
    errors: list[str] = []
    limiter = trio.CapacityLimiter(job.get("connect_concurrency", 200))

    async def get(path: str) -> Reply:
        conn = await Connection.open(port)
        try:
            return await conn.get(path)
        finally:
            await conn.aclose()

    async def one(i: int) -> None:
        try:
            async with limiter:
                conn = await Connection.open(port)
                sent = await conn.send(target.format(i=i))
            try:
                reply = await conn.receive(sent)
            finally:
                await conn.aclose()
            latencies.setdefault(str(reply.status), []).append(reply.received - reply.sent)
        except (OSError, ConnectionError, h11.ProtocolError) as exc:
            errors.append(_error(exc))

    async def probe(done: trio.Event) -> None:
        while not done.is_set():
            begin = time.monotonic()
            try:
                reply = await get(job["probe"])
                probes.append({"status": reply.status, "latency": reply.received - begin})
            except (OSError, ConnectionError, h11.ProtocolError) as exc:
                probes.append({"error": _error(exc), "latency": time.monotonic() - begin})
            await trio.sleep(job["probe_every"])

    done = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(probe, done)
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        done.set()
    return {
        "statuses": {status: len(times) for status, times in latencies.items()},
        "latencies": latencies,
        "probes": probes,
        "errors": errors,
    }


async def hammer(job: dict[str, Any]) -> dict[str, Any]:
    ports, n, target = job["ports"], job["n"], job["target"]
    counts: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    waits: list[float] = []
    errors: list[str] = []
    deadline = trio.current_time() + job["seconds"]

    async def loop(i: int) -> None:
        try:
            conn = await Connection.open(ports[i % len(ports)])
            try:
                while trio.current_time() < deadline:
                    reply = await conn.get(target)
                    statuses[str(reply.status)] += 1
                    cache_status = reply.headers.get("cache-status", "")
                    if "fwd=miss" in cache_status:
                        counts["waited"] += 1
                        waits.append(reply.received - reply.sent)
                    elif "fwd=stale" in cache_status:
                        counts["stale"] += 1
                    elif "hit" in cache_status:
                        counts["hit"] += 1
                    else:
                        counts["other"] += 1
            finally:
                await conn.aclose()
        except (OSError, ConnectionError, h11.ProtocolError) as exc:
            errors.append(_error(exc))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(loop, i)
    return {
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "hit": counts["hit"],
        "stale": counts["stale"],
        "waited": counts["waited"],
        "other": counts["other"],
        "waits": waits,
        "errors": errors,
    }


async def reload(job: dict[str, Any]) -> dict[str, Any]:
    port, targets = job["port"], job["targets"]
    conn = await Connection.open(port)
    try:
        etags = {}
        for target in targets:
            reply = await conn.get(target)
            etags[target] = reply.headers.get("etag")
        rounds: dict[str, dict[str, Any]] = {}
        for name, conditional in (("plain", False), ("etag", True)):
            statuses: Counter[str] = Counter()
            raw_bytes = body_bytes = 0
            for target in targets:
                etag = etags[target]
                sent = [("If-None-Match", etag)] if conditional and etag else []
                reply = await conn.get(target, sent)
                statuses[str(reply.status)] += 1
                raw_bytes += reply.raw_bytes
                body_bytes += len(reply.body)
            rounds[name] = {
                "statuses": dict(statuses),
                "bytes": raw_bytes,
                "body_bytes": body_bytes,
            }
    finally:
        await conn.aclose()
    return {"with_etag": sum(1 for e in etags.values() if e), **rounds}


JOBS = {
    "hammer": hammer,
    "reload": reload,
    "stampede": stampede,
    "timeline": timeline,
    "held": held,
    "wakeup": wakeup,
    "burst": burst,
}


def main() -> None:
    # Thousands of held connections need as many descriptors: take the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    job = json.loads(sys.argv[1])
    result = trio.run(JOBS[job["kind"]], job)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
