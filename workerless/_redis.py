"""RedisStore: one cache, and one computation per key, for every process sharing a Redis."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import redis
import trio

from ._errors import ConfigurationError, StoreError
from ._log import fields
from ._near import NearCache
from ._redis_channel import NoticeListener, encode_invalidation, encode_notice
from ._redis_clients import parse_url
from ._redis_errors import RedisErrors
from ._redis_keys import KeyLayout, glob_escape
from ._redis_scripts import ACQUIRE, GET, INVALIDATE, RELEASE, RENEW, SET_IF_EPOCH
from ._store import DEFAULT_MAX_VALUE_BYTES, MAX_LEASE, Entry, Lease, Notice, Store

__all__ = ["RedisStore"]

logger = logging.getLogger("workerless")

T = TypeVar("T")

# What redis-py raises: a cluster client's "no node reachable" is not a RedisError.
_REDIS_ERRORS = (redis.RedisError, OSError, redis.exceptions.RedisClusterException)

_DELETE_BATCH = 500
_WARN_EVERY = 60.0  # s between two warnings about the same key's bad data


class RedisStore(Store):
    """Values, leases and notices in one Redis, shared by every process pointed at it.

    ``url`` names one Redis (``redis://``, ``rediss://``, ``unix://``), a Sentinel-managed
    master (``redis+sentinel://host:port[,host:port...]/service_name[/db]``) or a Redis
    Cluster (``redis+cluster://host:port[,host:port...]``); see `_redis_clients`.  Values
    live under ``{prefix}{bbb}v:{key}`` with their ttl (``SET ... PX``), leases under
    ``{prefix}{bbb}lease:{key}``, and ``{bbb}``'s invalidation epoch under
    ``{prefix}{bbb}epoch``, where ``bbb`` is the key's bucket: one hash slot holds all a key
    needs (see `_redis_keys`).  A notice wakes this process's watchers at once and reaches
    the other processes on the pub/sub channel ``{prefix}notices``, which one listener
    thread per store subscribes to.  On a cluster it is classic pub/sub, which the cluster
    broadcasts to every node: the end-of-computation notice then leaves in the same script
    that releases the lease (a sharded channel would have to share that lease's slot), and
    listeners and invalidations meet on the node serving the channel's slot, so PUBLISH's
    receiver count, which acknowledged invalidation waits for, counts every listener.  redis-py is
    blocking, so every call runs in a thread, at most ``max_threads`` at once.  Every failure
    to reach Redis raises `StoreUnavailable` within about ``connect_timeout`` plus
    ``socket_timeout`` seconds, and calls succeed again as soon as Redis is back; a refusal
    (a missing ACL permission, Redis Cluster) raises `StoreError`, at `open` already.

    Hits are served from a near cache in this process for up to ``near_ttl`` s while the
    listener is subscribed, bounded by ``near_max_bytes`` and ``near_max_entries``.
    `delete` and `delete_prefix` wait up to ``invalidation_wait`` s for every listener on
    the channel to acknowledge that its near cache dropped the values, then log the silent.
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
        near_max_bytes: int = 32 * 1024 * 1024,
        near_max_entries: int = 10_000,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        invalidation_wait: float = 0.1,
    ) -> None:
        super().__init__(max_value_bytes=max_value_bytes)
        if max_threads < 1 or socket_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("max_threads, socket_timeout and connect_timeout must be positive")
        if invalidation_wait < 0:
            raise ValueError("invalidation_wait must not be negative")
        # No retries: a dead Redis must fail fast, and the Cacher already degrades.
        self._spec = parse_url(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        self._errors = RedisErrors(url, prefix, cluster=self._spec.topology == "cluster")
        self.url = self._errors.url
        if self._spec.topology == "cluster" and ("{" in prefix or "}" in prefix):
            raise ConfigurationError(
                f"prefix {prefix!r}: no braces on a Redis Cluster (they would be its hash tag)"
            )
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.invalidation_wait = invalidation_wait
        self._keys = KeyLayout(prefix)
        self._client: Any = None  # built by open: a cluster client talks to the cluster at once
        self._limiter = trio.CapacityLimiter(max_threads)
        self._channel = f"{prefix}notices"
        # Tells this store's messages from other processes', and names it in their warnings.
        self._origin = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._opened = 0
        self._runs = 0
        self._listener: NoticeListener | None = None
        # Hits served from this process for up to near_ttl s, while invalidations can reach us.
        self._near = NearCache(
            near_ttl,
            max_entries=near_max_entries,
            max_bytes=near_max_bytes,
            max_value_bytes=max_value_bytes,
        )
        self._near_trusted = False  # true while the listener is subscribed
        self._near_generation = 0  # bumped by every invalidation: a read racing one is not kept
        self._acks: dict[str, _PendingAck] = {}
        self._peers: dict[str, None] = {}  # origins heard from, oldest first (bounded)
        self._warned: dict[str, float] = {}
        self._last_repair = 0  # key -> when its bad data was last logged

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    @property
    def topology(self) -> str:
        """``single``, ``sentinel`` or ``cluster``: what the URL names."""
        return self._spec.topology

    @property
    def keys(self) -> KeyLayout:
        """The names of this store's keys in Redis (for tools and tests reading them)."""
        return self._keys

    @property
    def near_nbytes(self) -> int:
        """Bytes of keys and values in this process's near cache now."""
        return self._near.nbytes

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and try every command and script the store uses on a probe key.

        Raises StoreUnavailable if Redis cannot be reached, StoreError naming the missing
        permission if the Redis user lacks one, or saying Redis Cluster is not supported.
        """
        try:
            if self._client is None:
                client = await trio.to_thread.run_sync(self._spec.connect, limiter=self._limiter)
                self._bind(client)
            await trio.to_thread.run_sync(self._client.ping, limiter=self._limiter)
        except _REDIS_ERRORS as exc:
            raise self._error("cannot reach Redis at", exc) from exc
        await self._call(self._probe_sync)
        self._opened += 1

    def _bind(self, client: Any) -> None:
        self._client = client
        self._get_script = client.register_script(GET)
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._set_if_epoch = client.register_script(SET_IF_EPOCH)
        self._invalidate = client.register_script(INVALIDATE)

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
        if self._client is not None:
            await trio.to_thread.run_sync(self._client.close, abandon_on_cancel=True)
        for close in self._spec.closers:
            await trio.to_thread.run_sync(close, abandon_on_cancel=True)

    # -- values ----------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """The entry under ``key``, from the near cache while it can be trusted, else Redis.

        A near hit costs no thread hop and no round trip; Redis answers with the value and
        its ttl in one trip, and does not send a value over ``max_value_bytes`` at all.
        """
        if self._near_trusted:
            entry = self._near.get(key)
            if entry is not None:
                return entry
        generation = self._near_generation
        vkey = self._keys.value(key)
        reply = await self._call(self._get_script, [vkey], [self.max_value_bytes])
        status = reply[0]
        if status == 1:
            pttl, value = reply[1], reply[2]
            entry = Entry(cast(bytes, value), pttl / 1000 if pttl >= 0 else None)
            self._keep_near(key, entry, generation)
            return entry
        if status == 2:
            self._warn_bad_data(key, f"{reply[2]} bytes, over max_value_bytes: treated as a miss")
        elif status == 3:
            self._warn_bad_data(key, "not a string (WRONGTYPE): treated as a miss")
        return None

    async def set(self, key: str, value: bytes, ttl: float, *, epoch: int | None = None) -> bool:
        vkey = self._keys.value(key)
        if ttl <= 0:  # as MemoryStore: nothing stays stored
            await self.delete(key)
            return False
        if len(value) > self.max_value_bytes:
            self._warn_bad_data(key, f"not stored: {len(value)} bytes, over max_value_bytes")
            return False
        generation = self._near_generation
        px = _milliseconds(ttl)
        if epoch is None:
            await self._call(functools.partial(self._client.set, vkey, value, px=px))
        elif not await self._call(
            self._set_if_epoch, [vkey, self._keys.epoch(key)], [value, px, str(epoch)]
        ):
            return False
        self._keep_near(key, Entry(value, ttl), generation)
        return True

    async def epoch(self, key: str) -> int:
        """The epoch of ``key``'s bucket; a corrupt one is repaired (set to the time in ms)."""
        return await self._call(self._epoch_sync, self._keys.epoch(key))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` here, in Redis, and from every process's near cache."""
        self._forget(key, prefix=False)
        keys = [self._keys.epoch(key), self._keys.value(key)]
        removed, _ = await self._call(self._invalidate, keys, [self._repair_value()])
        await self._announce_invalidation(key, prefix=False)
        return bool(removed)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every value key under ``prefix`` on every master, everywhere, near caches
        included."""
        self._forget(prefix, prefix=True)
        # Every bucket's epoch goes first: a SET racing the scan then fails.
        await self._call(self._bump_every_epoch_sync)
        removed = await self._call(self._delete_matching_sync, self._keys.value_pattern(prefix))
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
        """Tell every listener, and wait (bounded) until each acknowledged having dropped it."""
        id = secrets.token_hex(8)
        pending = self._acks[id] = _PendingAck()
        try:
            message = encode_invalidation(key, prefix, self._origin, id)
            receivers = await self._call(self._client.publish, self._channel, message)
            pending.expected = receivers
            if len(pending.ackers) < receivers:
                with trio.move_on_after(self.invalidation_wait):
                    await pending.done.wait()
        finally:
            del self._acks[id]
        missing = receivers - len(pending.ackers)
        if missing > 0:
            silent = [p for p in self._peers if p not in pending.ackers][-5:]
            logger.warning(
                "invalidating %r: %d of %d processes sharing %s did not acknowledge within "
                "%g s (silent among: %s)",
                key,
                missing,
                receivers,
                self.url,
                self.invalidation_wait,
                ", ".join(silent) or "processes never heard from",
                extra=fields(key),
            )

    def _on_ack(self, id: str, origin: str) -> None:
        """An acknowledgement arrived (trio thread)."""
        self._peers.pop(origin, None)
        self._peers[origin] = None
        if len(self._peers) > 1000:
            del self._peers[next(iter(self._peers))]
        pending = self._acks.get(id)
        if pending is None:
            return
        pending.ackers.add(origin)
        if pending.expected is not None and len(pending.ackers) >= pending.expected:
            pending.done.set()

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, key: str, token: str, ttl: float) -> Lease:
        self._check_lease_request(token, ttl)
        keys, args = [self._keys.lease(key)], [token, _milliseconds(ttl), _milliseconds(MAX_LEASE)]
        status, holder, pttl = await self._call(self._acquire, keys, args)
        holder = holder.decode("ascii", "replace") if isinstance(holder, bytes) else str(holder)
        if status == 2:
            logger.warning(
                "broke the foreign lease %r on %r in %s", holder, key, self.url, extra=fields(key)
            )
            holder = token
        return Lease(status != 0, holder, int(pttl) / 1000)

    async def renew_lease(self, key: str, token: str, ttl: float) -> bool:
        keys, args = [self._keys.lease(key)], [token, _milliseconds(ttl)]
        return bool(await self._call(self._renew, keys, args))

    async def renew_leases(self, leases: Mapping[str, str], ttl: float) -> frozenset[str]:
        """Renew every lease in one pipelined round trip; return the keys whose lease was lost."""
        if not leases:
            return frozenset()
        keys = list(leases)
        milliseconds = _milliseconds(ttl)

        def renew_all() -> list[Any]:
            calls = [(1, self._keys.lease(key), leases[key], milliseconds) for key in keys]
            return self._evalsha_many(self._renew, calls)

        results = await self._call(renew_all)
        return frozenset(key for key, renewed in zip(keys, results, strict=True) if not renewed)

    async def release_lease(self, key: str, token: str) -> None:
        """Give the lease up if ``token`` holds it, waking this process's watchers of the key.

        A task of this process that began watching after this key's notice went out, and found
        the lease still taken, would otherwise wait out the lease: it re-checks at once.
        """
        if await self._call(self._release, [self._keys.lease(key)], [token]):
            self._deliver(Notice(key, "abandoned", "lease released", token=token))

    # -- notices ---------------------------------------------------------------------------

    async def announce(self, notice: Notice, token: str | None) -> None:
        """Release and publish in one round trip (one script); local watchers first."""
        self._deliver(notice)
        message = encode_notice(notice, self._origin)
        args = [token or "", self._channel, message]
        if await self._call(self._release, [self._keys.lease(notice.key)], args) and token:
            self._deliver(Notice(notice.key, "abandoned", "lease released", token=token))

    async def publish(self, notice: Notice) -> None:
        """Wake this process's watchers at once, then send ``notice`` to the other processes.

        This store's own notices coming back through the channel are ignored: they would
        reach watches registered after the notice was sent, which must re-check the store
        instead (a stale ``failed`` would fail a computation that never ran).
        """
        self._deliver(notice)
        await self._call(self._client.publish, self._channel, encode_notice(notice, self._origin))

    # -- plumbing --------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # Not abandoned on cancel: a lease taken in a thread must not go unnoticed; the
        # socket timeout bounds the wait.
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except _REDIS_ERRORS as exc:
            raise self._error("lost Redis at", exc) from exc

    def _evalsha_many(self, script: Any, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``script`` once per ``(numkeys, *keys_and_args)`` in one pipelined round trip
        per node (EVALSHA straight away: redis-py's script pipelining adds a SCRIPT EXISTS)."""
        for attempt in (1, 2):
            pipe = self._client.pipeline(transaction=False)
            for call in calls:
                # Not pipe.evalsha: a cluster pipeline refuses that method, not the command.
                pipe.execute_command("EVALSHA", script.sha, *call)
            try:
                return cast(list[Any], pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self._client.script_load(script.script)  # on every master of a cluster
        raise AssertionError("unreachable")

    def _bump_every_epoch_sync(self) -> None:
        repaired = self._repair_value()
        self._evalsha_many(self._invalidate, [(1, key, repaired) for key in self._keys.epochs])

    def _epoch_sync(self, epoch_key: str) -> int:
        try:
            raw = self._client.get(epoch_key)
        except redis.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            raw = b"(not a string)"
        if raw is None:
            return 0
        text = cast(bytes, raw)
        if text.isdigit() and len(text) <= 18:
            return int(text)
        repaired = self._repair_value()
        self._client.set(epoch_key, repaired)
        logger.warning(
            "repaired the corrupt epoch %.40r in %s (now %d)",
            text,
            self.url,
            repaired,
            extra=fields(),
        )
        return repaired

    def _repair_value(self) -> int:
        """What a corrupt epoch becomes: the time in ms, above any count and any earlier repair."""
        self._last_repair = max(_now_ms(), self._last_repair + 1)
        return self._last_repair

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

    def _probe_sync(self) -> None:
        """Use every command and script once, on probe keys of our own under the prefix."""
        client = self._client
        tags = self._keys.probe_tags()
        base = f"{self.prefix}{{{tags[0]}}}probe:{self._origin}:"  # one slot for all of them
        vkey, lkey, ekey = f"{base}v", f"{base}lease", f"{base}epoch"
        mine, theirs = secrets.token_hex(16), secrets.token_hex(16)
        try:
            if self._spec.topology != "cluster":
                # One node of a cluster answers MOVED (or CLUSTERDOWN) for some of these.
                for tag in tags:
                    client.get(f"{self.prefix}{{{tag}}}probe:{self._origin}")
            # Each command scripts use, directly first: a refusal inside a script names none.
            client.set(vkey, b"probe", px=10_000)
            client.get(vkey)
            client.strlen(vkey)
            client.pttl(vkey)
            client.pexpire(vkey, 10_000)
            client.execute_command("INCR", ekey)  # incr() sends INCRBY
            client.unlink(ekey)
            client.delete(vkey)
            for script in (
                self._get_script,
                self._acquire,
                self._renew,
                self._release,
                self._set_if_epoch,
                self._invalidate,
            ):
                client.script_load(script.script)  # on every master of a cluster
            client.set(vkey, b"probe", px=10_000)
            self._get_script([vkey], [self.max_value_bytes])
            self._set_if_epoch([vkey, ekey], [b"probe", 10_000, "0"])
            self._invalidate([ekey, vkey], [_now_ms()])
            lease_ms = [10_000, _milliseconds(MAX_LEASE)]
            self._acquire([lkey], [mine, *lease_ms])
            self._acquire([lkey], [mine, *lease_ms])
            self._acquire([lkey], [theirs, *lease_ms])
            self._renew([lkey], [mine, 10_000])
            self._release([lkey], [mine])
            client.publish(self._channel, json.dumps({"probe": self._origin}))
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self._channel)
                pubsub.get_message(timeout=self.socket_timeout)
            finally:
                pubsub.close()
            client.unlink(*client.scan_iter(match=glob_escape(base) + "*", count=100), vkey)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                client.delete(vkey, lkey, ekey)

    def _warn_bad_data(self, key: str, problem: str) -> None:
        """Log bad data under ``key``, at most once a minute per key."""
        now = time.monotonic()
        if now - self._warned.get(key, -_WARN_EVERY) < _WARN_EVERY:
            return
        if len(self._warned) > 1000:
            self._warned.clear()
        self._warned[key] = now
        logger.warning("%r in %s: %s", key, self.url, problem, extra=fields(key))

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return self._errors.error(what, exc)

    def _describe(self, exc: BaseException) -> str:
        return self._errors.describe(exc)

    def _scrub(self, text: str) -> str:
        return self._errors.scrub(text)


class _PendingAck:
    """The acknowledgements one invalidation is waiting for."""

    __slots__ = ("ackers", "done", "expected")

    def __init__(self) -> None:
        self.ackers: set[str] = set()
        self.expected: int | None = None  # how many listeners got it; known once published
        self.done = trio.Event()


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _now_ms() -> int:
    """The wall-clock time in ms: larger than any epoch count, so a repair only increases it."""
    return time.time_ns() // 1_000_000
