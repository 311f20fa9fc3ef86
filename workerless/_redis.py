"""RedisStore: one cache, and one computation per key, for every process sharing a Redis."""

from __future__ import annotations

import functools
import logging
import math
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._errors import ConfigurationError, StoreUnavailable
from ._near import NearCache
from ._redis_channel import NoticeListener, encode_invalidation, encode_notice
from ._store import Entry, Lease, Notice, Store

__all__ = ["RedisStore"]

logger = logging.getLogger("workerless")

T = TypeVar("T")

_GLOB_METACHARACTERS = re.compile(r"([*?\[\]\\])")
_DELETE_BATCH = 500

# Take the lease if it is free; a holder asking again with its own token keeps it (renewed),
# as MemoryStore does, so a retried acquisition never locks its own caller out.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, ARGV[1], ARGV[2]} end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, ARGV[1], ARGV[2]}
end
return {0, holder, redis.call('PTTL', KEYS[1])}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Store only if no invalidation happened since the computation read the epoch.
_SET_IF_EPOCH = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore(Store):
    """Values, leases and notices in one Redis, shared by every process pointed at it.

    Values live under ``{prefix}v:{key}`` with their ttl (``SET ... PX``), leases under
    ``{prefix}lease:{key}``.  A notice wakes this process's watchers at once and reaches the
    other processes on the pub/sub channel ``{prefix}notices``, which one listener thread
    per store subscribes to.  redis-py is blocking, so every call runs in a thread, at most
    ``max_threads`` at once.  Every failure to reach Redis raises `StoreUnavailable` within
    about ``connect_timeout`` plus ``socket_timeout`` seconds; calls succeed again as soon
    as Redis is back.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "workerless:",
        max_threads: int = 32,
        socket_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        near_ttl: float = 1.0,
    ) -> None:
        super().__init__()
        if max_threads < 1 or socket_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("max_threads, socket_timeout and connect_timeout must be positive")
        self.url = redact_url(url)
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self._secrets = _secrets_in(url)
        try:
            # No retries: a dead Redis must fail fast, and the Cacher already degrades.
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 0),
                client_name="workerless",
            )
        except ValueError as exc:
            raise ConfigurationError(f"store URL {self.url}: {self._scrub(str(exc))}") from None
        self._limiter = trio.CapacityLimiter(max_threads)
        self._channel = f"{prefix}notices"
        self._origin = secrets.token_hex(8)  # tells this store's notices from other processes'
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._set_if_epoch = self._client.register_script(_SET_IF_EPOCH)
        self._epoch_key = f"{prefix}epoch"
        self._opened = 0
        self._runs = 0
        self._listener: NoticeListener | None = None
        # Hits served from this process for up to near_ttl s, while invalidations can reach us.
        self._near = NearCache(near_ttl)
        self._near_trusted = False  # true while the listener is subscribed
        self._near_generation = 0  # bumped by every invalidation: a read racing one is not kept

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await trio.to_thread.run_sync(self._client.ping, limiter=self._limiter)
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("cannot reach Redis at", exc) from exc
        self._opened += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the notice listener until cancelled; started once it is subscribed.

        Start-up is not held past the first failed attempt when Redis is down: the listener
        then keeps reconnecting in the background.  Several cachers may share one
        store: they share its one listener, which stops when the last of them stops.
        """
        self._runs += 1
        try:
            listener = self._listener
            if listener is None or listener.stopping:
                listener = NoticeListener(self, trio.lowlevel.current_trio_token())
                self._listener = listener
                listener.start()
            with trio.move_on_after(self.connect_timeout + self.socket_timeout):
                await listener.first_attempt.wait()
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._runs -= 1
            if self._runs == 0 and self._listener is not None:
                self._listener.stop()
                self._distrust_near()

    async def aclose(self) -> None:
        """Stop the listener (within a fraction of a second) and close the connections."""
        self._opened = max(0, self._opened - 1)
        if self._opened or self._runs:
            return
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            self._distrust_near()
            await trio.to_thread.run_sync(listener.join, abandon_on_cancel=True)
        await trio.to_thread.run_sync(self._client.close, abandon_on_cancel=True)

    # -- values ----------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """The entry under ``key``, from the near cache while it can be trusted, else Redis.

        A near hit costs no thread hop and no round trip; Redis answers ``GET`` and ``PTTL``
        in one trip.
        """
        if self._near_trusted:
            entry = self._near.get(key)
            if entry is not None:
                return entry
        generation = self._near_generation
        entry = await self._call(self._get_sync, self._value_key(key))
        if entry is not None:
            self._keep_near(key, entry, generation)
        return entry

    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        vkey = self._value_key(key)
        if ttl <= 0:  # as MemoryStore: nothing stays stored
            await self.delete(key)
            return False
        generation = self._near_generation
        px = _milliseconds(ttl)
        if epoch is None:
            await self._call(functools.partial(self._client.set, vkey, value, px=px))
        elif not await self._call(self._set_if_epoch, [vkey, self._epoch_key], [value, px, epoch]):
            return False
        self._keep_near(key, Entry(value, ttl), generation)
        return True

    async def epoch(self) -> int:
        return int(await self._call(self._client.get, self._epoch_key) or 0)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` here, in Redis, and from every process's near cache."""
        self._forget(key, prefix=False)
        removed = bool(await self._call(self._delete_sync, self._value_key(key)))
        await self._announce_invalidation(key, prefix=False)
        return removed

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every value key under ``prefix``, everywhere, near caches included."""
        self._forget(prefix, prefix=True)
        await self._call(self._client.incr, self._epoch_key)  # before: a racing SET then fails
        pattern = _glob_escape(self._value_key(prefix)) + "*"
        removed = await self._call(self._delete_matching_sync, pattern)
        await self._announce_invalidation(prefix, prefix=True)
        return removed

    # -- the near cache --------------------------------------------------------------------

    def _keep_near(self, key: str, entry: Entry, generation: int) -> None:
        if self._near_trusted and generation == self._near_generation:
            self._near.put(key, entry)

    def _forget(self, key: str, *, prefix: bool) -> None:
        """Drop ``key`` (or everything under it) from the near cache; runs in the trio thread."""
        self._near_generation += 1
        if prefix:
            self._near.drop_prefix(key)
        else:
            self._near.drop(key)

    def _distrust_near(self) -> None:
        """Invalidations may be missed from now on: stop serving near hits until subscribed."""
        self._near_trusted = False
        self._near_generation += 1
        self._near.clear()

    async def _announce_invalidation(self, key: str, *, prefix: bool) -> None:
        message = encode_invalidation(key, prefix, self._origin)
        await self._call(self._client.publish, self._channel, message)

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, key: str, token: str, ttl: float) -> Lease:
        keys, args = [self._lease_key(key)], [token, _milliseconds(ttl)]
        acquired, holder, pttl = await self._call(self._acquire, keys, args)
        holder = holder.decode() if isinstance(holder, bytes) else str(holder)
        return Lease(bool(acquired), holder, max(int(pttl), 0) / 1000)

    async def renew_lease(self, key: str, token: str, ttl: float) -> bool:
        keys, args = [self._lease_key(key)], [token, _milliseconds(ttl)]
        return bool(await self._call(self._renew, keys, args))

    async def renew_leases(self, leases: Mapping[str, str], ttl: float) -> frozenset[str]:
        """Renew every lease in one pipelined round trip; return the keys whose lease was lost."""
        if not leases:
            return frozenset()
        keys = list(leases)
        milliseconds = _milliseconds(ttl)

        def renew_all() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                self._renew(
                    keys=[self._lease_key(key)], args=[leases[key], milliseconds], client=pipe
                )
            return pipe.execute()

        results = await self._call(renew_all)
        return frozenset(key for key, renewed in zip(keys, results, strict=True) if not renewed)

    async def release_lease(self, key: str, token: str) -> None:
        """Give the lease up if ``token`` holds it, waking this process's watchers of the key.

        A task of this process that began watching after this key's notice went out, and found
        the lease still taken, would otherwise wait out the lease: it re-checks at once.
        """
        if await self._call(self._release, [self._lease_key(key)], [token]):
            self._deliver(Notice(key, "abandoned", "lease released"))

    # -- notices ---------------------------------------------------------------------------

    async def publish(self, notice: Notice) -> None:
        """Wake this process's watchers at once, then send ``notice`` to the other processes.

        This store's own notices coming back through the channel are ignored: they would
        reach watches registered after the notice was sent, which must re-check the store
        instead (a stale ``failed`` would fail a computation that never ran).
        """
        self._deliver(notice)
        await self._call(self._client.publish, self._channel, encode_notice(notice, self._origin))

    def _wake_all(self, reason: str) -> None:
        """Wake every local watch with a synthetic ``abandoned`` notice so it re-checks now."""
        for key in tuple(self._watches):
            self._deliver(Notice(key, "abandoned", reason))

    # -- plumbing --------------------------------------------------------------------------

    def _value_key(self, key: str) -> str:
        return f"{self.prefix}v:{key}"

    def _lease_key(self, key: str) -> str:
        return f"{self.prefix}lease:{key}"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # Not abandoned on cancel: a lease taken in a thread must not go unnoticed; the
        # socket timeout bounds the wait.
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except (redis.RedisError, OSError) as exc:
            raise self._unavailable("lost Redis at", exc) from exc

    def _delete_sync(self, vkey: str) -> int:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(self._epoch_key)
            pipe.unlink(vkey)
            _, removed = pipe.execute()
        return int(removed)

    def _get_sync(self, vkey: str) -> Entry | None:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.get(vkey)
            pipe.pttl(vkey)
            value, pttl = pipe.execute()
        if value is None:
            return None
        return Entry(cast(bytes, value), pttl / 1000 if pttl >= 0 else None)

    def _delete_matching_sync(self, pattern: str) -> int:
        removed = 0
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= _DELETE_BATCH:
                removed += self._client.unlink(*batch)
                batch.clear()
        if batch:
            removed += self._client.unlink(*batch)
        return removed

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"{what} {self.url}: {self._describe(exc)}")

    def _describe(self, exc: BaseException) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")

    def _scrub(self, text: str) -> str:
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


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return _GLOB_METACHARACTERS.sub(r"\\\1", text)


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
