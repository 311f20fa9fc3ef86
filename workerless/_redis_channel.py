"""The pub/sub side of RedisStore: one listener thread per store, and its message formats.

Three kinds of message share the channel ``{prefix}notices``: completion notices (a key's
computation ended), invalidations (a key or prefix was deleted, so near caches drop it) and
acknowledgements (a listener dropped what an invalidation named).  Each carries the sending
store's ``origin``, so a store ignores its own notices; every listener, the sender's own
included, acknowledges every invalidation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import redis
import trio

from ._log import fields
from ._store import Notice, is_lease_token

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = [
    "Invalidation",
    "NoticeListener",
    "decode_ack",
    "decode_invalidation",
    "decode_notice",
    "encode_ack",
    "encode_invalidation",
    "encode_notice",
]

logger = logging.getLogger("workerless")

_OUTCOMES = frozenset({"stored", "failed", "timed_out", "abandoned"})
_LISTENER_POLL = 0.1  # how often the listener thread looks at its stop flag
_RECONNECT_BACKOFF_CAP = 1.0


class NoticeListener:
    """The pub/sub subscription of one store: a thread that hands notices to the trio thread.

    It polls a stop flag every fraction of a second (messages themselves arrive at once), and
    when Redis goes away it reconnects with backoff, logging the outage once.  It wakes every
    local watch the moment the connection is lost (waiters on another process's computation
    fall back at once) and again after a reconnection (notices sent meanwhile were lost).
    It answers each invalidation with an acknowledgement once this store's near cache dropped
    the values named.
    """

    def __init__(self, store: RedisStore, token: trio.lowlevel.TrioToken) -> None:
        self._store = store
        self._token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._listen, name="workerless-redis-notices", daemon=True
        )
        self.first_attempt = trio.Event()  # set when first subscribed, or first failed to

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        self._thread.join()

    def _listen(self) -> None:
        store = self._store
        failures = 0
        while not self._stop.is_set():
            pubsub = store._client.pubsub()
            try:
                pubsub.subscribe(store._channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=_LISTENER_POLL)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._to_trio(self._on_subscribed, failures > 0)
                        if failures:
                            logger.warning(
                                "notice listener reconnected to Redis at %s",
                                store.url,
                                extra=fields(),
                            )
                        failures = 0
                    elif message["type"] == "message":
                        self._dispatch(message["data"])
            except (redis.RedisError, OSError) as exc:
                if self._stop.is_set():
                    break
                failures += 1
                self._to_trio(store._distrust_near)
                self._to_trio(store._wake_all, "store connection lost")
                if failures == 1:
                    self._to_trio(self.first_attempt.set)
                    logger.warning(
                        "notice listener lost Redis at %s (%s): reconnecting",
                        store.url,
                        store._describe(exc),
                        extra=fields(),
                    )
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            if failures:
                self._stop.wait(min(_RECONNECT_BACKOFF_CAP, 0.1 * 2 ** (failures - 1)))

    def _to_trio(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:  # the trio run ended without closing the store
            self._stop.set()

    def _dispatch(self, data: Any) -> None:
        store = self._store
        ack = decode_ack(data)
        if ack is not None:
            self._to_trio(store._on_ack, *ack)
            return
        invalidation = decode_invalidation(data)
        if invalidation is not None:
            if invalidation.origin != store._origin:
                forget = functools.partial(
                    store._forget, invalidation.key, prefix=invalidation.prefix
                )
                try:  # wait until it is done: the acknowledgement promises it
                    trio.from_thread.run_sync(forget, trio_token=self._token)
                except trio.RunFinishedError:
                    self._stop.set()
                    return
            if invalidation.id:
                reply = encode_ack(invalidation.id, store._origin)
                store._client.publish(store._channel, reply)
            return
        notice, origin = decode_notice(data)
        if notice is not None and origin != store._origin:
            self._to_trio(store._deliver, notice)

    def _on_subscribed(self, after_outage: bool) -> None:
        self.first_attempt.set()
        store = self._store
        store._distrust_near()  # whatever was announced before we listened is unknown
        store._near_trusted = not self.stopping
        if after_outage:
            store._wake_all("notice listener reconnected")


def encode_notice(notice: Notice, origin: str) -> bytes:
    """A notice as the compact JSON sent on the channel, with the sending store's id."""
    body = {
        "key": notice.key,
        "outcome": notice.outcome,
        "reason": notice.reason,
        "cached": notice.cached,
        "token": notice.token,
        "origin": origin,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class Invalidation(NamedTuple):
    """A decoded invalidation: the key (or prefix), its sender, and the id acks quote."""

    key: str
    prefix: bool
    origin: str
    id: str


def encode_invalidation(key: str, prefix: bool, origin: str, id: str) -> bytes:
    """An invalidation of ``key`` (or of every key under it, if ``prefix``) as channel JSON."""
    body = {"invalidate": key, "prefix": prefix, "origin": origin, "id": id}
    return json.dumps(body, separators=(",", ":")).encode()


def encode_ack(id: str, origin: str) -> bytes:
    """The acknowledgement of invalidation ``id`` by the store ``origin``."""
    return json.dumps({"ack": id, "origin": origin}, separators=(",", ":")).encode()


def _load(data: Any) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except (ValueError, TypeError):
        return None
    return body if isinstance(body, dict) else None


def decode_ack(data: Any) -> tuple[str, str] | None:
    """(invalidation id, origin) if the message acknowledges an invalidation."""
    body = _load(data)
    if body is None or "ack" not in body:
        return None
    id, origin = body.get("ack"), body.get("origin")
    if isinstance(id, str) and isinstance(origin, str):
        return id, origin
    return None


def decode_invalidation(data: Any) -> Invalidation | None:
    """The invalidation a channel message announces, if it is one."""
    body = _load(data)
    if body is None or "invalidate" not in body:
        return None
    key, prefix = body.get("invalidate"), body.get("prefix")
    origin, id = body.get("origin", ""), body.get("id", "")
    if (
        isinstance(key, str)
        and isinstance(prefix, bool)
        and isinstance(origin, str)
        and isinstance(id, str)
    ):
        return Invalidation(key, prefix, origin, id)
    return None


def decode_notice(data: Any) -> tuple[Notice | None, str]:
    """The notice in a channel message and its origin; (None, "") if it is not one of ours."""
    body = _load(data)
    if body is not None:
        key, outcome = body.get("key"), body.get("outcome")
        reason, cached = body.get("reason", ""), body.get("cached", True)
        token, origin = body.get("token", ""), body.get("origin", "")
        if (
            isinstance(key, str)
            and outcome in _OUTCOMES
            and isinstance(reason, str)
            and isinstance(cached, bool)
            and isinstance(token, str)
            and (token == "" or is_lease_token(token))
            and isinstance(origin, str)
        ):
            return Notice(key, outcome, reason, cached, token), origin
    logger.debug("ignoring a malformed notice: %.200r", data, extra=fields())
    return None, ""
