"""Micro-benchmark: tag invalidation cost vs number of tagged entries, and single-flight upstream calls
vs concurrency, on a real Redis (127.0.0.1:6379 by default) with two engines standing for two replicas.

    .venv/bin/python benchmarks/invalidation.py [--redis redis://127.0.0.1:6379/0] [--max-entries 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from litellm_cache_plugin.engine import CacheEngine, SingleFlightSettings
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.store import GuardedStore
from litellm_cache_plugin.store.redis import RedisStore

TENANT = Tenant("team", "bench")
NONE = RequestControls()


async def fill(engine: CacheEngine, prefix: str, count: int, tag: str) -> None:
    batch = 5000
    for start in range(0, count, batch):
        items = [(f"{prefix}:{i}", b'{"answer":"cached"}') for i in range(start, min(count, start + batch))]
        await engine.store_many(
            items, tenant=TENANT, model_group="m", model_version="1", ttl=600, tags=(tag,)
        )


async def invalidation(url: str, sizes: list[int]) -> None:
    print("tag invalidation (one INCR whatever the number of tagged entries):")
    print(
        f"{'entries under tag':>18} {'fill s':>8} {'invalidate p50 ms':>18} {'max ms':>8}  tagged entry after"
    )
    for size in sizes:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        store = RedisStore.from_url(url, prefix=f"{prefix}:")
        engine = CacheEngine(GuardedStore(store, 5.0), namespace="b")
        tag = f"tag-{size}"
        started = time.perf_counter()
        await fill(engine, prefix, size, tag)
        filled = time.perf_counter() - started
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            await engine.invalidate_tag(tag)
            timings.append((time.perf_counter() - t0) * 1000)
        found, _ = await engine.lookup_many(
            [f"{prefix}:{size - 1}"], tenant=TENANT, model_group="m", model_version="1", controls=NONE
        )
        state = "miss (invalidated)" if found[0] is None else "HIT (wrong!)"
        print(f"{size:>18,} {filled:>8.1f} {statistics.median(timings):>18.3f} {max(timings):>8.3f}  {state}")
        await _drop_prefix(store, prefix)
        await store.close()


async def _drop_prefix(store: RedisStore, prefix: str) -> None:
    client = store._client
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


async def single_flight(url: str, levels: list[int], upstream_ms: float) -> None:
    print(f"\nsingle-flight: identical concurrent misses over two replicas, upstream {upstream_ms:.0f} ms:")
    print(f"{'concurrent':>10} {'upstream calls':>15} {'served':>7} {'wall s':>7}")
    for level in levels:
        prefix = f"bench-sf-{uuid.uuid4().hex[:8]}"
        replicas = [
            CacheEngine(
                GuardedStore(RedisStore.from_url(url, prefix=f"{prefix}:"), 1.0),
                namespace="b",
                single_flight=SingleFlightSettings(timeout=30),
            )
            for _ in range(2)
        ]
        calls = 0

        async def request(engine: CacheEngine) -> bool:
            nonlocal calls
            key = "b:x:question"
            found = await engine.lookup(key, tenant=TENANT, model_group="m", model_version="1", controls=NONE)
            if found.entry is not None:
                return True

            async def poll() -> Entry | None:
                again = await engine.lookup(
                    key, tenant=TENANT, model_group="m", model_version="1", controls=NONE, record=False
                )
                return again.entry

            role = await engine.claim(key, poll=poll, model_group="bench")
            if not role.leader and role.entry is not None:
                return True
            calls += 1
            await asyncio.sleep(upstream_ms / 1000)
            entry = await engine.store_entry(
                key, b'{"answer":1}', tenant=TENANT, model_group="m", model_version="1", ttl=60,
                counters=found.counters,
            )  # fmt: skip
            engine.finish(key, entry)
            return True

        started = time.perf_counter()
        results = await asyncio.gather(*(request(replicas[i % 2]) for i in range(level)))
        wall = time.perf_counter() - started
        print(f"{level:>10} {calls:>15} {sum(results):>7} {wall:>7.2f}")
        for engine in replicas:
            await _drop_prefix(engine.store.inner, prefix)  # type: ignore[attr-defined]
            await engine.store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--max-entries", type=int, default=1_000_000)
    parser.add_argument("--upstream-ms", type=float, default=200)
    args = parser.parse_args()
    sizes = [s for s in (10, 10_000, 1_000_000) if s <= args.max_entries]
    await invalidation(args.redis, sizes)
    await single_flight(args.redis, [10, 100, 500], args.upstream_ms)


if __name__ == "__main__":
    asyncio.run(main())
