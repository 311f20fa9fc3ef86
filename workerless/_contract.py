"""StoreContract: the rules of `Store`, as a pytest-trio test class any store can run.

Imported by `workerless.testing` only when pytest is installed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, TypeVar

import pytest
import trio

from ._store import MAX_LEASE, Notice, Store

__all__ = ["Plant", "StoreContract", "running_store"]

TIMEOUT = 10.0  # every test's bound: generous, the suite's stores may be remote and loaded
ECHO_WAIT = 0.2  # long enough for a shared store's own notice to come back, were it not ignored

S = TypeVar("S", bound=Store)

Plant = Literal[
    "foreign lease",
    "eternal lease",
    "overlong lease",
    "wrong-typed value",
    "oversized value",
    "corrupt epoch",
]


@asynccontextmanager
async def running_store(store: S) -> AsyncIterator[S]:
    """``store`` opened and running (as a Cacher runs it) for the block, closed after."""
    await store.open()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            yield store
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


def token() -> str:
    return secrets.token_hex(16)


class StoreContract:
    """Subclass it in a test module and provide the fixture ``store``: a fresh, empty store,
    opened and running (`running_store` does both), e.g.::

        class TestMyStore(StoreContract):
            @pytest.fixture
            async def store(self) -> AsyncIterator[Store]:
                async with running_store(MyStore()) as store:
                    yield store

    Optional: a ``peer`` fixture yielding a second instance sharing the same backend (as
    another process would), for the cross-process rules; and `plant`, which writes bad data
    behind the store's back, for the hostile-data rules.  Rules needing them are skipped.
    """

    @pytest.fixture
    async def peer(self) -> AsyncIterator[Store | None]:
        """Another instance on the same backend, opened and running; None if there is none."""
        yield None

    async def plant(self, store: Store, what: Plant, key: str) -> None:
        """Write ``what`` under ``key`` (or as ``key``'s epoch) behind the store's back; skip
        if unable.

        Leases: a value that is not a token, a token with no expiry, a token with more than
        MAX_LEASE s left.  Values: one of the wrong type, one over ``max_value_bytes``.
        """
        pytest.skip(f"this suite cannot plant a {what}")

    @staticmethod
    async def _peer_or_skip(peer: Store | None) -> Store:
        if peer is None:
            pytest.skip("no peer store sharing the backend")
        return peer

    # -- values ----------------------------------------------------------------------------

    async def test_set_then_get_returns_the_value_and_its_remaining_ttl(self, store: Store) -> None:
        """A stored value comes back unchanged with a ttl no longer than the one given."""
        with trio.fail_after(TIMEOUT):
            assert await store.get("/a") is None
            assert await store.set("/a", b"\x00body\xff", 30)
            entry = await store.get("/a")
        assert entry is not None and entry.value == b"\x00body\xff"
        assert entry.ttl is None or 25 < entry.ttl <= 30

    async def test_values_expire_after_their_ttl(self, store: Store) -> None:
        """A value is gone once its ttl has passed."""
        with trio.fail_after(TIMEOUT):
            await store.set("/short", b"v", 0.2)
            await trio.sleep(0.5)
            assert await store.get("/short") is None

    async def test_set_replaces_and_a_non_positive_ttl_deletes(self, store: Store) -> None:
        """set replaces what was there; set with ttl <= 0 stores nothing and removes the key."""
        with trio.fail_after(TIMEOUT):
            await store.set("/a", b"one", 30)
            await store.set("/a", b"two", 30)
            entry = await store.get("/a")
            assert entry is not None and entry.value == b"two"
            assert not await store.set("/a", b"three", 0)
            assert await store.get("/a") is None

    async def test_a_value_over_max_value_bytes_is_never_stored(self, store: Store) -> None:
        """A value of exactly max_value_bytes is stored; one byte more is refused, not kept."""
        limit = store.max_value_bytes
        with trio.fail_after(TIMEOUT):
            assert await store.set("/fits", b"x" * limit, 30)
            entry = await store.get("/fits")
            assert entry is not None and len(entry.value) == limit
            assert not await store.set("/over", b"x" * (limit + 1), 30)
            assert await store.get("/over") is None

    async def test_keys_are_taken_literally(self, store: Store) -> None:
        """Any printable ASCII key works, glob and regex characters included, up to 250 chars."""
        keys = ["/x*[a]?\\/1", "/x*[a]?\\/2", "/xyzab/1", "/%2F?q=1&r=[]", "/" + "k" * 249]
        with trio.fail_after(TIMEOUT):
            for n, key in enumerate(keys):
                await store.set(key, str(n).encode(), 30)
            for n, key in enumerate(keys):
                entry = await store.get(key)
                assert entry is not None and entry.value == str(n).encode()
            assert await store.delete_prefix("/x*[a]?\\/") == 2
            assert await store.get("/xyzab/1") is not None

    async def test_delete_reports_whether_the_key_was_there(self, store: Store) -> None:
        """delete removes a value and tells whether there was one."""
        with trio.fail_after(TIMEOUT):
            await store.set("/a", b"v", 30)
            assert await store.delete("/a") is True
            assert await store.delete("/a") is False
            assert await store.get("/a") is None

    async def test_delete_prefix_removes_exactly_the_keys_under_it(self, store: Store) -> None:
        """delete_prefix removes every key starting with the prefix, counts them, spares others."""
        with trio.fail_after(TIMEOUT):
            for key in ("/f/a", "/f/b", "/f", "/g/a"):
                await store.set(key, b"v", 30)
            assert await store.delete_prefix("/f/") == 2
            assert await store.get("/f/a") is None and await store.get("/f/b") is None
            assert await store.get("/f") is not None and await store.get("/g/a") is not None

    async def test_every_invalidation_of_a_key_increases_its_epoch(self, store: Store) -> None:
        """set(key, epoch=e) stores only while no delete of the key, and no delete_prefix
        covering it, came after reading e."""
        with trio.fail_after(TIMEOUT):
            epoch = await store.epoch("/a/1")
            assert await store.set("/a/1", b"v", 30, epoch=epoch)
            await store.delete("/a/1")
            after_delete = await store.epoch("/a/1")
            assert after_delete > epoch
            assert not await store.set("/a/1", b"v", 30, epoch=epoch)
            assert await store.get("/a/1") is None
            before = {key: await store.epoch(key) for key in ("/a/1", "/a/2", "/a/3/x")}
            await store.delete_prefix("/a/")
            for key, read in before.items():
                assert await store.epoch(key) > read
                assert not await store.set(key, b"v", 30, epoch=read)
                assert await store.get(key) is None
            assert await store.set("/a/1", b"v", 30, epoch=await store.epoch("/a/1"))

    async def test_bad_data_under_a_key_is_a_miss_and_is_overwritten(self, store: Store) -> None:
        """A wrong-typed or oversized value planted under a key reads as a miss; set replaces it."""
        with trio.fail_after(TIMEOUT):
            for what in ("wrong-typed value", "oversized value"):
                key = f"/planted/{what.split()[0]}"
                await self.plant(store, what, key)
                assert await store.get(key) is None
                assert await store.set(key, b"good", 30)
                entry = await store.get(key)
                assert entry is not None and entry.value == b"good"

    async def test_a_corrupt_epoch_is_repaired_never_raised(self, store: Store) -> None:
        """With a corrupt epoch: set(epoch=) refuses quietly, epoch() repairs it, deletes work."""
        with trio.fail_after(TIMEOUT):
            await self.plant(store, "corrupt epoch", "/a")
            assert not await store.set("/a", b"v", 30, epoch=0)
            repaired = await store.epoch("/a")
            assert await store.set("/a", b"v", 30, epoch=repaired)
            await self.plant(store, "corrupt epoch", "/a")
            assert await store.delete("/a")
            assert await store.epoch("/a") > repaired
            await self.plant(store, "corrupt epoch", "/a")
            await store.delete_prefix("/")
            assert await store.epoch("/a") > repaired

    # -- leases ----------------------------------------------------------------------------

    async def test_a_lease_is_exclusive_until_its_holder_releases_it(self, store: Store) -> None:
        """One token holds a lease; others learn who and for how long; only the holder frees it."""
        mine, theirs = token(), token()
        with trio.fail_after(TIMEOUT):
            taken = await store.acquire_lease("/k", mine, 30)
            assert (taken.acquired, taken.holder) == (True, mine)
            refused = await store.acquire_lease("/k", theirs, 30)
            assert (refused.acquired, refused.holder) == (False, mine)
            assert 25 < refused.expires_in <= 30
            await store.release_lease("/k", theirs)
            assert not (await store.acquire_lease("/k", theirs, 30)).acquired
            await store.release_lease("/k", mine)
            assert (await store.acquire_lease("/k", theirs, 30)).acquired

    async def test_the_same_token_gets_its_lease_again_renewed(self, store: Store) -> None:
        """acquire_lease is re-entrant: the holder's token succeeds again and extends the lease."""
        mine = token()
        with trio.fail_after(TIMEOUT):
            assert (await store.acquire_lease("/k", mine, 0.3)).acquired
            again = await store.acquire_lease("/k", mine, 30)
            assert again.acquired and again.holder == mine
            await trio.sleep(0.5)  # past the first ttl
            assert not (await store.acquire_lease("/k", token(), 30)).acquired

    async def test_a_lease_ends_at_its_ttl(self, store: Store) -> None:
        """A lease nobody renews is free for another token once its ttl has passed."""
        with trio.fail_after(TIMEOUT):
            assert (await store.acquire_lease("/k", token(), 0.2)).acquired
            await trio.sleep(0.4)
            assert (await store.acquire_lease("/k", token(), 30)).acquired

    async def test_only_the_holder_renews_and_renew_leases_names_the_lost(
        self, store: Store
    ) -> None:
        """renew_lease extends the holder's lease only; renew_leases returns the keys lost."""
        a, b, c, d = token(), token(), token(), token()
        with trio.fail_after(TIMEOUT):
            assert not await store.renew_lease("/free", a, 30)
            assert (await store.acquire_lease("/a", a, 0.3)).acquired
            assert (await store.acquire_lease("/b", b, 0.3)).acquired
            assert (await store.acquire_lease("/c", token(), 30)).acquired
            assert not await store.renew_lease("/a", b, 30)
            lost = await store.renew_leases({"/a": a, "/b": b, "/c": c, "/d": d}, 30)
            assert lost == {"/c", "/d"}
            await trio.sleep(0.5)
            assert not (await store.acquire_lease("/a", token(), 30)).acquired
            assert not (await store.acquire_lease("/b", token(), 30)).acquired

    async def test_malformed_lease_requests_are_refused(self, store: Store) -> None:
        """A token not of the form token_hex(16), or a ttl outside (0, MAX_LEASE], is an error."""
        with trio.fail_after(TIMEOUT):
            for bad_token, ttl in (("mine", 30.0), (token().upper(), 30.0)):
                with pytest.raises(ValueError):
                    await store.acquire_lease("/k", bad_token, ttl)
            for bad_ttl in (0.0, -1.0, MAX_LEASE + 1):
                with pytest.raises(ValueError):
                    await store.acquire_lease("/k", token(), bad_ttl)

    @pytest.mark.parametrize("what", ["foreign lease", "eternal lease", "overlong lease"])
    async def test_a_foreign_lease_is_broken_and_taken(self, store: Store, what: Plant) -> None:
        """A lease this library would never set (odd value, no expiry, over MAX_LEASE) is taken."""
        mine = token()
        with trio.fail_after(TIMEOUT):
            await self.plant(store, what, "/k")
            taken = await store.acquire_lease("/k", mine, 30)
            assert (taken.acquired, taken.holder) == (True, mine)
            assert not (await store.acquire_lease("/k", token(), 30)).acquired

    # -- notices ---------------------------------------------------------------------------

    async def test_publish_wakes_the_local_watchers_of_that_key_only(self, store: Store) -> None:
        """publish delivers at once to every watch of the key in this process, and to no other."""
        notice = Notice("/k", "stored", token=token())
        with store.watch("/k") as first, store.watch("/k") as second, store.watch("/j") as other:
            await store.publish(notice)
            assert first.delivered == notice and second.delivered == notice
            with trio.fail_after(TIMEOUT):
                await trio.sleep(ECHO_WAIT)
            assert other.delivered is None

    async def test_a_watch_made_after_a_publish_does_not_get_it(self, store: Store) -> None:
        """A store ignores its own notice coming back: a later watch must re-check instead."""
        with trio.fail_after(TIMEOUT):
            await store.publish(Notice("/k", "failed", "stale"))
            with store.watch("/k") as late:
                await trio.sleep(ECHO_WAIT)
                assert late.delivered is None

    async def test_release_wakes_the_local_watchers(self, store: Store) -> None:
        """The holder releasing a lease wakes this process's watchers of the key with
        'abandoned'; a release with another token wakes nobody."""
        mine = token()
        with trio.fail_after(TIMEOUT), store.watch("/k") as watch:
            assert (await store.acquire_lease("/k", mine, 30)).acquired
            await store.release_lease("/k", token())
            assert watch.delivered is None
            await store.release_lease("/k", mine)
            notice = await watch.wait()
        assert (notice.key, notice.outcome) == ("/k", "abandoned")

    async def test_a_lease_excludes_every_other_process(
        self, store: Store, peer: Store | None
    ) -> None:
        """A lease taken through one process is refused to another until released."""
        other = await self._peer_or_skip(peer)
        mine = token()
        with trio.fail_after(TIMEOUT):
            assert (await store.acquire_lease("/k", mine, 30)).acquired
            refused = await other.acquire_lease("/k", token(), 30)
            assert (refused.acquired, refused.holder) == (False, mine)
            await store.release_lease("/k", mine)
            assert (await other.acquire_lease("/k", token(), 30)).acquired

    async def test_notices_reach_other_processes_whole(
        self, store: Store, peer: Store | None
    ) -> None:
        """A notice published by another process arrives with every field, its token included."""
        other = await self._peer_or_skip(peer)
        notice = Notice("/k", "timed_out", "ran past 3 s", cached=False, token=token())
        with trio.fail_after(TIMEOUT), store.watch("/k") as watch:
            await other.publish(notice)
            assert await watch.wait() == notice

    # -- invalidation across processes ----------------------------------------------------

    async def test_an_invalidation_has_reached_every_process_when_it_returns(
        self, store: Store, peer: Store | None
    ) -> None:
        """After delete or delete_prefix on one process, another reads a miss at once."""
        other = await self._peer_or_skip(peer)
        with trio.fail_after(TIMEOUT):
            for key in ("/a", "/p/a"):
                await store.set(key, b"v", 30)
                assert await other.get(key) is not None  # now held near, if other caches
            assert await other.epoch("/a") == await store.epoch("/a")
            assert await store.delete("/a")
            assert await other.get("/a") is None
            assert await store.delete_prefix("/p/") == 1
            assert await other.get("/p/a") is None
            assert await other.epoch("/p/a") == await store.epoch("/p/a")

    # -- lifecycle -------------------------------------------------------------------------

    async def test_open_run_and_aclose_are_counted(self, store: Store) -> None:
        """A second owner's open, run and aclose leave the store working for the first."""
        with trio.fail_after(TIMEOUT):
            await store.open()
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                nursery.cancel_scope.cancel()
            await store.aclose()
            await store.set("/k", b"v", 30)
            entry = await store.get("/k")
            assert entry is not None and entry.value == b"v"
            with store.watch("/k") as watch:
                await store.publish(Notice("/k", "stored"))
                assert watch.delivered == Notice("/k", "stored")
