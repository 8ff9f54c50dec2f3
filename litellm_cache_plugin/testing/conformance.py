"""Conformance suite every :class:`~litellm_cache_plugin.store.base.Store` backend must pass.

Subclass :class:`StoreConformance` in a test module (name it ``Test...``) and provide two fixtures::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self):
            store = MyStore(...)          # empty, isolated from other tests
            yield store
            await store.close()

        @pytest.fixture
        def advance_time(self):
            async def advance(seconds: float) -> None:
                await asyncio.sleep(seconds)   # or move a fake clock
            return advance

``advance_time(seconds)`` must make the store see that much more time (a fake clock for in-process
stores, a real sleep for servers; the TTLs used here are 0.2-0.5 s so real waits stay short).

Class attributes tune the suite:

* ``eviction_pressure_bytes``: if set, the counters test writes that many bytes of values first,
  more than the store can hold, and checks that counters survived and values were evicted.
* ``ttl_slack``: extra seconds waited past a TTL before expecting expiry (server clock granularity).

Requires pytest and pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from litellm_cache_plugin.store.base import Store, StoreError, StoreStats

__all__ = ["AdvanceTime", "StoreConformance"]

AdvanceTime = Callable[[float], Awaitable[None]]

# Printable ASCII that trips naive key handling: spaces, glob and regex metacharacters, braces (Redis
# Cluster hash tags), quotes, backslash, percent and colon separators.
ODD_KEY = "odd key:{tag}*?[x]^$\\'\"%20|#&=+,;~`!@()<>/."


@pytest.mark.asyncio
class StoreConformance:
    eviction_pressure_bytes: int | None = None
    ttl_slack: float = 0.1

    # -- get / set / delete ------------------------------------------------------------------------

    async def test_missing_key_is_none(self, store: Store) -> None:
        assert await store.get("missing") is None

    async def test_set_then_get(self, store: Store) -> None:
        await store.set("k", b"value", ttl=60)
        assert await store.get("k") == b"value"

    async def test_overwrite_replaces_value(self, store: Store) -> None:
        await store.set("k", b"first", ttl=60)
        await store.set("k", b"second", ttl=60)
        assert await store.get("k") == b"second"

    async def test_get_many_keeps_order_and_gaps(self, store: Store) -> None:
        await store.set("a", b"1", ttl=60)
        await store.set("c", b"3", ttl=60)
        assert await store.get_many(["c", "missing", "a", "b"]) == [b"3", None, b"1", None]
        assert await store.get_many([]) == []

    async def test_set_many(self, store: Store) -> None:
        items = [(f"m{i}", f"value {i}".encode()) for i in range(20)]
        await store.set_many(items, ttl=60)
        assert await store.get_many([k for k, _ in items]) == [v for _, v in items]
        await store.set_many([], ttl=60)

    async def test_delete(self, store: Store) -> None:
        await store.set("k", b"v", ttl=60)
        assert await store.delete("k") is True
        assert await store.get("k") is None
        assert await store.delete("k") is False
        assert await store.delete("never-set") is False

    # -- TTL -----------------------------------------------------------------------------------------

    async def test_ttl_expiry(self, store: Store, advance_time: AdvanceTime) -> None:
        await store.set("short", b"v", ttl=0.2)
        await store.set("long", b"v", ttl=60)
        assert await store.get("short") == b"v"
        await advance_time(0.2 + self.ttl_slack)
        assert await store.get("short") is None
        assert await store.get_many(["short", "long"]) == [None, b"v"]

    async def test_set_many_ttl_expiry(self, store: Store, advance_time: AdvanceTime) -> None:
        await store.set_many([("x", b"1"), ("y", b"2")], ttl=0.2)
        await advance_time(0.2 + self.ttl_slack)
        assert await store.get_many(["x", "y"]) == [None, None]

    async def test_overwrite_resets_ttl(self, store: Store, advance_time: AdvanceTime) -> None:
        await store.set("k", b"old", ttl=0.2)
        await store.set("k", b"new", ttl=60)
        await advance_time(0.2 + self.ttl_slack)
        assert await store.get("k") == b"new"

    async def test_delete_of_expired_key_is_false(self, store: Store, advance_time: AdvanceTime) -> None:
        await store.set("k", b"v", ttl=0.2)
        await advance_time(0.2 + self.ttl_slack)
        assert await store.delete("k") is False

    # -- counters ------------------------------------------------------------------------------------

    async def test_incr_from_missing(self, store: Store) -> None:
        assert await store.incr("c") == 1
        assert await store.incr("c") == 2
        assert await store.incr("c", 5) == 7
        assert await store.incr("other", 3) == 3

    async def test_concurrent_incr_is_exact(self, store: Store) -> None:
        results = await asyncio.gather(*(store.incr("c") for _ in range(100)))
        assert sorted(results) == list(range(1, 101))
        assert await store.get_counters(["c"]) == [100]

    async def test_get_counters_missing_is_zero(self, store: Store) -> None:
        await store.incr("a", 2)
        await store.incr("c", 4)
        assert await store.get_counters(["a", "b", "c"]) == [2, 0, 4]
        assert await store.get_counters([]) == []

    async def test_get_with_counters(self, store: Store) -> None:
        await store.set("entry", b"\x01value", 30)
        await store.incr("gen:x", 3)
        assert await store.get_with_counters("entry", ["gen:x", "gen:missing"]) == (b"\x01value", [3, 0])
        assert await store.get_with_counters("absent", ["gen:x"]) == (None, [3])
        assert await store.get_with_counters("entry", []) == (b"\x01value", [])

    async def test_get_with_counters_or_lock_locks_only_a_miss(self, store: Store) -> None:
        await store.set("entry", b"\x01value", 30)
        await store.incr("gen:x", 3)
        found = await store.get_with_counters_or_lock(
            "entry", ["gen:x", "gen:missing"], "lock:e", "alice", 30
        )
        assert found == (b"\x01value", [3, 0], False)
        assert await store.acquire_lock("lock:e", "bob", ttl=30) is True  # an entry takes no lock
        assert await store.get_with_counters_or_lock("absent", ["gen:x"], "lock:a", "alice", 30) == (
            None,
            [3],
            True,
        )
        assert await store.acquire_lock("lock:a", "bob", ttl=30) is False  # alice holds it
        assert await store.get_with_counters_or_lock("absent", [], "lock:a", "carol", 30) == (None, [], False)
        assert await store.release_lock("lock:a", "carol") is False
        assert await store.release_lock("lock:a", "alice") is True

    async def test_get_with_counters_or_lock_concurrent_misses_one_lock(self, store: Store) -> None:
        results = await asyncio.gather(
            *(
                store.get_with_counters_or_lock("absent", ["gen:x"], "lock", f"owner{i}", 30)
                for i in range(20)
            )
        )
        locked = [found[2] for found in results]
        assert locked.count(True) == 1
        assert all(found[:2] == (None, [0]) for found in results)
        assert await store.release_lock("lock", f"owner{locked.index(True)}") is True

    async def test_get_with_counters_or_lock_lock_expires(
        self, store: Store, advance_time: AdvanceTime
    ) -> None:
        assert (await store.get_with_counters_or_lock("absent", [], "lock", "alice", 0.2))[2] is True
        await advance_time(0.2 + self.ttl_slack)
        assert await store.acquire_lock("lock", "bob", ttl=30) is True

    async def test_counters_survive(self, store: Store) -> None:
        await store.incr("gen:1", 7)
        await store.incr("gen:2")
        pressure = self.eviction_pressure_bytes
        chunk = 64 * 1024
        count = (pressure // chunk + 1) if pressure else 8
        for i in range(count):
            await store.set(f"fill{i}", os.urandom(chunk), ttl=60)
        assert await store.get_counters(["gen:1", "gen:2"]) == [7, 1]
        if pressure:
            stats = await store.stats()
            assert stats.evictions, "the store did not evict anything: eviction_pressure_bytes too small"
            assert await store.get("fill0") is None
        assert await store.incr("gen:1") == 8

    # -- locks ---------------------------------------------------------------------------------------

    async def test_lock_exclusive(self, store: Store) -> None:
        assert await store.acquire_lock("lock", "alice", ttl=30) is True
        assert await store.acquire_lock("lock", "bob", ttl=30) is False
        assert await store.acquire_lock("lock", "alice", ttl=30) is False  # not re-entrant
        assert await store.release_lock("lock", "alice") is True
        assert await store.acquire_lock("lock", "bob", ttl=30) is True

    async def test_concurrent_acquirers_exactly_one_wins(self, store: Store) -> None:
        results = await asyncio.gather(*(store.acquire_lock("lock", f"owner{i}", ttl=30) for i in range(50)))
        assert results.count(True) == 1
        winner = f"owner{results.index(True)}"
        assert await store.release_lock("lock", winner) is True

    async def test_lock_expires(self, store: Store, advance_time: AdvanceTime) -> None:
        assert await store.acquire_lock("lock", "alice", ttl=0.2) is True
        await advance_time(0.2 + self.ttl_slack)
        assert await store.acquire_lock("lock", "bob", ttl=30) is True
        # alice's lock is gone: she must not be able to release bob's.
        assert await store.release_lock("lock", "alice") is False
        assert await store.release_lock("lock", "bob") is True

    async def test_release_by_non_owner_refused(self, store: Store) -> None:
        assert await store.acquire_lock("lock", "alice", ttl=30) is True
        assert await store.release_lock("lock", "mallory") is False
        assert await store.acquire_lock("lock", "bob", ttl=30) is False
        assert await store.release_lock("lock", "alice") is True
        assert await store.release_lock("lock", "alice") is False
        assert await store.release_lock("never-locked", "alice") is False

    # -- payloads and keys ---------------------------------------------------------------------------

    async def test_binary_values_round_trip(self, store: Store) -> None:
        every_byte = bytes(range(256))
        await store.set("bin", every_byte, ttl=60)
        await store.set_many([("bin2", every_byte[::-1]), ("nul", b"\x00")], ttl=60)
        assert await store.get("bin") == every_byte
        assert await store.get_many(["bin2", "nul"]) == [every_byte[::-1], b"\x00"]

    async def test_large_value(self, store: Store) -> None:
        big = os.urandom(1024 * 1024)
        await store.set("big", big, ttl=60)
        assert await store.get("big") == big

    async def test_odd_ascii_keys(self, store: Store) -> None:
        await store.set(ODD_KEY, b"odd", ttl=60)
        long_key = "k" * 250  # the protocol's maximum key length
        await store.set(long_key, b"long", ttl=60)
        assert await store.get(ODD_KEY) == b"odd"
        assert await store.get_many([long_key, ODD_KEY]) == [b"long", b"odd"]
        assert await store.incr(ODD_KEY + "#c") == 1
        assert await store.acquire_lock(ODD_KEY + "#l", "o", ttl=30) is True
        assert await store.release_lock(ODD_KEY + "#l", "o") is True
        assert await store.delete(ODD_KEY) is True

    async def test_keys_are_distinct(self, store: Store) -> None:
        # Keys that only differ in case, whitespace or a glob character must not collide.
        keys = ["k", "K", "k ", " k", "k*", "k?"]
        await store.set_many([(k, k.encode()) for k in keys], ttl=60)
        assert await store.get_many(keys) == [k.encode() for k in keys]

    # -- housekeeping --------------------------------------------------------------------------------

    async def test_stats(self, store: Store) -> None:
        await store.set("k", b"v", ttl=60)
        stats = await store.stats()
        assert isinstance(stats, StoreStats)
        assert stats.backend == store.name
        for value in (stats.entries, stats.bytes, stats.evictions, stats.expirations):
            assert value is None or (isinstance(value, int) and value >= 0)

    async def test_ping(self, store: Store) -> None:
        assert await store.ping() is True

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert isinstance(store.name, str) and store.name

    async def test_close_is_idempotent(self, store: Store) -> None:
        await store.close()
        await store.close()
        with pytest.raises(StoreError):
            await store.get("k")
