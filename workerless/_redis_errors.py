"""How redis-py's exceptions become ours for one Redis URL, never showing its secrets."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis

from ._errors import StoreError, StoreUnavailable

__all__ = ["RedisErrors", "redact_url"]

_ClusterException = redis.exceptions.RedisClusterException  # not a RedisError
_CLUSTER_REPLIES = ("MOVED", "ASK", "CROSSSLOT", "CLUSTERDOWN", "TRYAGAIN")


class RedisErrors:
    """Maps a redis-py exception to `StoreUnavailable` (an outage) or `StoreError` (a refusal,
    explained: credentials, a missing ACL permission, a Redis Cluster node); scrubs secrets."""

    def __init__(self, url: str, prefix: str, *, cluster: bool = False) -> None:
        self.url = redact_url(url)
        self.cluster = cluster
        self.prefix = prefix
        self._secrets = _secrets_in(url)
        self._user = unquote(urlsplit(url).username or "") or "default"

    def error(self, what: str, exc: BaseException) -> StoreError:
        """Our exception for a redis-py one: an outage, or a refusal explained."""
        described = self.describe(exc)
        if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
            return StoreError(f"Redis at {self.url} refused the credentials: {described}")
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
            return StoreUnavailable(f"{what} {self.url}: {described}")
        text = self.scrub(str(exc))
        cluster_reply = isinstance(
            exc, (redis.exceptions.AskError, redis.exceptions.ClusterError, _ClusterException)
        ) or (text.startswith(_CLUSTER_REPLIES) or "CROSSSLOT" in described)
        if self.cluster and "Cluster mode is not enabled" in text:
            return StoreError(
                f"{self.url} is not a Redis Cluster, or Redis user {self._user!r} lacks "
                f"+cluster|slots ({described})"
            )
        if cluster_reply and self.cluster and "CROSSSLOT" not in described:
            # A failover or a reshard in progress, or no node reachable: an outage.
            return StoreUnavailable(f"{what} {self.url}: {described}")
        if cluster_reply and not self.cluster:
            return StoreError(
                f"Redis Cluster is not supported by this URL ({self.url}): use "
                f"redis+cluster://host:port[,host:port...] ({described})"
            )
        if isinstance(exc, redis.exceptions.NoPermissionError) or "executing the script" in text:
            return StoreError(f"Redis at {self.url}: {self._permission_hint(text)}")
        return StoreError(f"Redis at {self.url} refused: {described}")

    def _permission_hint(self, text: str) -> str:
        command = re.search(r"run the '([^']+)' command", text)
        if "executing the script" in text:
            name, need = "a command its scripts run", "the permissions of the README's ACL rule"
        elif command is not None:
            name = command.group(1).lower()
            need = f"+{name}"
        elif "channel" in text:
            name, need = "its channel", f"&{self.prefix}*"
        else:
            name, need = "its keys", f"~{self.prefix}*"
        return (
            f"Redis user {self._user!r} lacks permission for {name!r}: add {need} to its ACL "
            f"rule ({text})"
        )

    def describe(self, exc: BaseException) -> str:
        return self.scrub(f"{type(exc).__name__}: {exc}")

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password`` query field) as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # A lone user part may well be a password written in the wrong place: hide it too.
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    fields = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in fields):
        fields = [(name, "***" if name == "password" else value) for name, value in fields]
        query = urlencode(fields, safe="*")
    else:
        query = parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_in(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    found = [parts.password or ""]
    if parts.password is None:
        found.append(parts.username or "")
    found += [value for name, value in parse_qsl(parts.query) if name == "password"]
    return tuple({s for raw in found if raw for s in (raw, unquote(raw))})
