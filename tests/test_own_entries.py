"""The cache's own key count (``OwnEntries``): counted off the request path, bounded, labelled; and
the engine's backend stats on a Redis database shared with another application."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.store import GuardedStore
from litellm_cache_plugin.store.base import StoreError, StoreStats
from litellm_cache_plugin.store.memory import MemoryStore
from litellm_cache_plugin.store.own_entries import OwnEntries
from litellm_cache_plugin.store.redis import RedisStore
from tests.fake_clock import FakeClock

SERVER_WIDE = StoreStats("fake", 999, 10_000, 5, 7, {"bytes": "server", "entries": "database"})


class CountingStore(MemoryStore):
    """A store that can count its keys, with a count that takes ``delay`` seconds or fails."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self.delay = 0.0
        self.answer: int | Exception | None = 3

    async def count_keys(self, key_prefix: str, *, max_keys: int) -> int | None:
        self.calls.append((key_prefix, max_keys))
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_replaces_entries_with_the_caches_own_count_and_labels_it() -> None:
    store, clock = CountingStore(), FakeClock()
    own = OwnEntries(GuardedStore(store, timeout=0.05), "lcp:", max_keys=500, clock=clock)
    stats = await own.apply(SERVER_WIDE)
    assert store.calls == [("lcp:", 500)]  # through the guard to the backend inside it
    assert stats.entries == 3
    assert stats.coverage == {"bytes": "server", "entries": "cache"}
    assert (stats.bytes, stats.evictions, stats.expirations) == (10_000, 5, 7)  # untouched


async def test_counts_at_most_once_per_max_age_in_the_background() -> None:
    store, clock = CountingStore(), FakeClock()
    own = OwnEntries(store, "lcp:", max_age=60, clock=clock)
    assert (await own.apply(SERVER_WIDE)).entries == 3
    store.answer = 4
    clock.now += 59
    assert (await own.apply(SERVER_WIDE)).entries == 3  # the figure of the last count
    assert len(store.calls) == 1
    clock.now += 1
    store.delay = 0.05
    # Due: a new count starts in the background; the reader gets the last figure without waiting.
    assert (await own.apply(SERVER_WIDE)).entries == 3
    await asyncio.sleep(0.01)
    assert (await own.apply(SERVER_WIDE)).entries == 3
    await asyncio.sleep(0.01)
    assert len(store.calls) == 2  # one count at a time
    await asyncio.sleep(0.1)
    assert (await own.apply(SERVER_WIDE)).entries == 4


async def test_the_first_reader_waits_a_bounded_time_for_the_first_count() -> None:
    store = CountingStore()
    store.delay = 0.3
    own = OwnEntries(store, "lcp:", first_wait=0.05)
    stats = await own.apply(SERVER_WIDE)
    assert stats == SERVER_WIDE  # not counted yet: the backend's own figures, labelled as they are
    await asyncio.sleep(0.35)
    assert (await own.apply(SERVER_WIDE)).entries == 3


@pytest.mark.parametrize("answer", [None, StoreError("down"), RuntimeError("bug")])
async def test_too_many_keys_or_a_failed_count_leave_the_backends_figures(
    answer: int | Exception | None,
) -> None:
    store = CountingStore()
    own = OwnEntries(store, "lcp:")
    store.answer = answer
    assert await own.apply(SERVER_WIDE) == SERVER_WIDE


async def test_backends_that_cannot_count_keep_their_stats() -> None:
    store = MemoryStore()
    own = OwnEntries(GuardedStore(store, timeout=0.05), "lcp:")
    assert own.counter is None
    assert await own.apply(SERVER_WIDE) == SERVER_WIDE


def test_a_count_started_on_a_loop_that_is_gone_is_started_again() -> None:
    store = CountingStore()
    store.delay = 10  # never ends on the first loop
    own = OwnEntries(store, "lcp:", first_wait=0.01)

    async def read() -> StoreStats:
        return await own.apply(SERVER_WIDE)

    assert asyncio.run(read()) == SERVER_WIDE
    store.delay = 0
    assert asyncio.run(read()).entries == 3
    assert len(store.calls) == 2


# --- against the real Redis, shared with another application -------------------------------------------


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(urlsplit(redis_url)._replace(query="").geturl())
    yield client
    await client.aclose()


@pytest.mark.parametrize("store_prefix", ["", "run-prefix"])
async def test_engine_stats_on_a_shared_redis_database_count_only_the_caches_keys(
    redis_url: str, raw: aioredis.Redis, store_prefix: str
) -> None:
    run = uuid.uuid4().hex[:12]
    # "" is the default configuration: no store prefix, keys under the namespace only.
    prefix = f"lcp-test-{run}:" if store_prefix else ""
    namespace = f"lcp-own-{run}"
    inner = RedisStore.from_url(redis_url, prefix=prefix)
    # The proxy's guard, with a deadline no loop stall reaches (a full garbage collection alone took
    # 0.45 s under load): this test counts keys; a store call that fails still fails it.
    engine = CacheEngine(GuardedStore(inner, timeout=5.0), namespace=namespace)
    other_app = [f"other-app-{run}:session:{i}" for i in range(50)]
    tenant = Tenant("team", "fp-" + run)
    try:
        await raw.mset({key: b"someone else's data" for key in other_app})
        for i in range(7):
            key = f"{namespace}:x:{run}{i}"
            await engine.store_entry(key, b"{}", tenant=tenant, model_group="m", model_version="1", ttl=60)
        await engine.invalidate_model("other-group")  # one counter key

        stats = await engine.backend_stats()
        assert stats is not None
        ours = [k async for k in raw.scan_iter(match=f"{prefix}{namespace}:*", count=1000)]
        assert len(ours) == 8
        assert stats.entries == 8  # 7 entries + 1 counter; the other application's 50 keys are not ours
        assert stats.coverage["entries"] == "cache"
        # What Redis only reports for the whole server says so.
        assert stats.coverage["bytes"] == stats.coverage["expirations"] == "server"
        assert stats.coverage["evictions"] == "server"
        assert isinstance(stats.bytes, int) and isinstance(stats.expirations, int)
    finally:
        await raw.delete(*other_app)
        leftovers = [k async for k in raw.scan_iter(match=f"{prefix}{namespace}:*", count=1000)]
        if leftovers:
            await raw.delete(*leftovers)
        await inner.close()
