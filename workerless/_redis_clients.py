"""The redis-py client a RedisStore URL names: one Redis, a Sentinel-managed master, or a Cluster.

- ``redis://``, ``rediss://``, ``unix://``: one Redis (redis-py's own URL forms).
- ``redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]``: the master
  the sentinels name for ``service_name``, asked again on every new connection, so after a
  failover the next connection reaches the new master.  The credentials are the master's;
  sentinels are reached without.
- ``redis+cluster://[user:pass@]host:port[,host:port...]``: a Redis Cluster, discovered from
  any of the nodes given.

Every client fails fast (no retries but the one redirection a cluster needs after a
failover); the store degrades instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from ._errors import ConfigurationError
from ._redis_errors import RedisErrors, redact_url

__all__ = ["ClientSpec", "Topology", "parse_url"]

Topology = Literal["single", "sentinel", "cluster"]
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


@dataclass(frozen=True)
class ClientSpec:
    """What a URL asks for; `connect` builds the client (a cluster client talks to the
    cluster as it is built, so call it in a thread)."""

    topology: Topology
    connect: Callable[[], Any] = field(repr=False)
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)


def parse_url(url: str, *, socket_timeout: float, connect_timeout: float) -> ClientSpec:
    """The client spec of ``url``; ConfigurationError (never showing the password) if malformed."""
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "client_name": "workerless",
    }
    scheme = url.partition("://")[0].lower()
    try:
        if scheme == "redis+sentinel":
            return _sentinel(url, common)
        if scheme == "redis+cluster":
            return _cluster(url, common)
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)
    except ValueError as exc:
        message = RedisErrors(url, "").scrub(str(exc))  # redis-py may quote the URL
        raise ConfigurationError(f"store URL {redact_url(url)}: {message}") from None
    return ClientSpec("single", lambda: client)


def _hosts(url: str, example: str) -> tuple[str | None, str | None, list[tuple[str, int]], str]:
    """(user, password, [(host, port)...], path) of a URL listing several hosts."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"no query or fragment expected: {example}")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port[,host:port...]: {example}")
        hosts.append((host.strip("[]"), int(port)))
    return user, password, hosts, parts.path


def _sentinel(url: str, common: dict[str, Any]) -> ClientSpec:
    example = "redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]"
    user, password, hosts, path = _hosts(url, example)
    names = [part for part in path.split("/") if part]
    if not 1 <= len(names) <= 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError(f"expected /service_name[/db]: {example}")
    service, db = names[0], int(names[1]) if len(names) == 2 else 0
    sentinel_kwargs = {k: common[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        sentinel_kwargs=sentinel_kwargs,
        retry=Retry(NoBackoff(), 0),
        username=user,
        password=password,
        db=db,
        **common,
    )
    client = sentinel.master_for(service)  # type: ignore[no-untyped-call]
    closers = [s.close for s in sentinel.sentinels]
    return ClientSpec("sentinel", lambda: client, closers)


def _cluster(url: str, common: dict[str, Any]) -> ClientSpec:
    example = "redis+cluster://[user:pass@]host:port[,host:port...]"
    user, password, hosts, path = _hosts(url, example)
    if path not in ("", "/"):
        raise ValueError(f"a cluster has no database number: {example}")

    def connect() -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],  # type: ignore[no-untyped-call]
            username=user,
            password=password,
            retry=Retry(NoBackoff(), 1),  # one redirection after a failover or a reshard
            **common,
        )

    return ClientSpec("cluster", connect)
