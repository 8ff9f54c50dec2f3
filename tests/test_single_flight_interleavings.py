"""Single flight under many interleavings: several engines (workers, replicas) on one shared store
whose replies come back after random delays, many requests of one key at once in each. Whatever the
order the replies arrive in, one request goes upstream, every other is served its answer well
before the single-flight timeout (a wait on a lock nobody will release shows up as a timeout here),
and no fill lock is left behind.

The store is a real ``MemoryStore``; only when its replies reach their callers is randomized (each
operation runs at once, as on a server, and its reply is delayed), which is what reorders requests
of one process on a real backend with a connection pool. Seeds make each order reproducible."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from litellm_cache_plugin.engine import CacheEngine, SingleFlightSettings
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.store.memory import MemoryStore
from tests.fake_clock import FakeClock

TENANT = Tenant("team", "a")
TIMEOUT = 30.0  # the default single-flight timeout: a deadlock would wait this long
BOUND = 5.0  # every request of a burst must be answered within this


class JitteryReplies:
    """A ``MemoryStore`` whose every reply reaches its caller after a random delay."""

    def __init__(self, inner: MemoryStore, rng: random.Random, max_delay: float) -> None:
        self.inner = inner
        self.rng = rng
        self.max_delay = max_delay

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def delayed(*args: Any, **kwargs: Any) -> Any:
            result = await attribute(*args, **kwargs)
            await asyncio.sleep(self.rng.random() * self.max_delay)
            return result

        return delayed


def jittery_engines(
    shared: MemoryStore, rng: random.Random, count: int, clock: Any = None
) -> list[CacheEngine]:
    """``count`` engines (workers, replicas) on ``shared``, each seeing its replies late by up to
    1, 5 or 20 ms (chosen per engine)."""
    extra = {"clock": clock} if clock is not None else {}
    return [
        CacheEngine(
            JitteryReplies(shared, rng, max_delay=rng.choice((0.001, 0.005, 0.02))),  # type: ignore[arg-type]
            namespace="t",
            single_flight=SingleFlightSettings(timeout=TIMEOUT),
            **extra,
        )
        for _ in range(count)
    ]


async def one_request(
    engine: CacheEngine,
    key: str,
    *,
    read_ahead: bool,
    upstream: list[str],
    name: str,
    failures: list[str] | None = None,
) -> str:
    """A request as the plugin makes it: (the fast path's read, taking the fill lock on a miss),
    the lookup, the flight; the leader calls upstream, stores and finishes; the read's lock is
    given back at the end."""
    read = None
    if read_ahead:
        read = await engine.read(key, tenant=TENANT, model_group="m", lock=True)
        if read.raw is not None:
            return "HIT"
    try:
        found = await engine.lookup(
            key, tenant=TENANT, model_group="m", model_version="1", controls=RequestControls()
        )
        if found.entry is not None:
            return "HIT"

        async def poll() -> Entry | None:
            again = await engine.lookup(
                key, tenant=TENANT, model_group="m", model_version="1", controls=RequestControls()
            )
            return again.entry

        role = await engine.claim(
            key, poll=poll, model_group="m", call_id=name, absent=found.reason == "absent"
        )
        if not role.leader:
            return "WAITED" if role.entry is not None else "UPSTREAM-AFTER-WAIT"
        upstream.append(name)
        await asyncio.sleep(0.02)  # the model answering
        if failures:  # this upstream call fails: nothing to store
            failures.pop()
            engine.finish(key, None)
            return "FAILED"
        entry = await engine.store_entry(
            key, b'{"answer":1}', tenant=TENANT, model_group="m", model_version="1", ttl=60
        )
        engine.finish(key, entry)
        return "LED"
    finally:
        if read is not None:
            engine.drop_read_lock(read)


@pytest.mark.parametrize("seed", range(40))
async def test_a_burst_of_one_key_makes_one_upstream_call_whatever_the_reply_order(seed: int) -> None:
    rng = random.Random(seed)
    shared = MemoryStore()
    engines = jittery_engines(shared, rng, rng.randint(1, 3))
    upstream: list[str] = []
    requests = [
        one_request(
            engines[i % len(engines)],
            "k",
            read_ahead=rng.random() < 0.8,  # most requests come through the fast path's read
            upstream=upstream,
            name=f"r{i}",
        )
        for i in range(rng.randint(5, 30))
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*requests), BOUND)
    assert len(upstream) == 1, (upstream, outcomes)
    assert "UPSTREAM-AFTER-WAIT" not in outcomes
    await asyncio.sleep(0.05)  # releases run in the background
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # nothing left held
    for engine in engines:
        assert not engine.flights.in_flight("k")


@pytest.mark.parametrize("seed", range(20))
async def test_when_the_first_leader_fails_the_burst_still_ends_promptly_and_leaves_no_lock(
    seed: int,
) -> None:
    """The first upstream call fails: its local waiters go upstream themselves, the other engines'
    pollers take the lock over, and one of those calls is stored. Nobody waits out the timeout."""
    rng = random.Random(1000 + seed)
    shared = MemoryStore()
    engines = jittery_engines(shared, rng, rng.randint(2, 3))
    upstream: list[str] = []
    failures = ["the first call"]
    requests = [
        one_request(
            engines[i % len(engines)],
            "k",
            read_ahead=rng.random() < 0.8,
            upstream=upstream,
            name=f"r{i}",
            failures=failures,
        )
        for i in range(rng.randint(5, 30))
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*requests), BOUND)
    assert outcomes.count("FAILED") == 1
    assert "LED" in outcomes or "UPSTREAM-AFTER-WAIT" in outcomes
    await asyncio.sleep(0.05)
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)
    for engine in engines:
        assert not engine.flights.in_flight("k")


# --- stale-while-revalidate: one refresh per stale entry across replicas ------------------------------


class StoringUpstream:
    """A refresh that asks the model again (after a short wait) and stores its answer, counted."""

    def __init__(self) -> None:
        self.region: Any = None
        self.refreshes = 0

    async def refresh(self, ctx: Any, timeout: float) -> None:
        self.refreshes += 1
        await asyncio.sleep(0.02)
        await self.region.store_response(ctx, _answer(f"refresh {self.refreshes}"), upstream_ms=20.0)


def _answer(text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "llama",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }


def _ctx(region: Any, n: int) -> Any:
    from litellm_cache_plugin.policy.keys import CacheRequest
    from litellm_cache_plugin.region import RequestContext

    request = CacheRequest(
        kind="chat",
        model_group="llama",
        provider="ollama_chat",
        model_version="1",
        params={"temperature": 0},
        messages=[{"role": "user", "content": "What is stale-while-revalidate?"}],
    )
    return RequestContext(
        request=request,
        tenant=TENANT,
        cacheable=True,
        reason="deterministic",
        controls=RequestControls(),
        ttl=60,
        stale_for=600,
        call_id=f"call-{n}",
        stream=False,
    )


@pytest.mark.parametrize("seed", range(30))
async def test_a_stale_entry_is_refreshed_once_across_replicas_whatever_the_reply_order(seed: int) -> None:
    """Many requests on 1-3 replicas find one stale entry at once, while the one refresh they start
    stores its answer: one refresh in all, including for a request that read the stale entry just
    before the new one was stored and asked for the refresh lock just after that refresh ended."""
    from litellm_cache_plugin.region import CacheRegion
    from litellm_cache_plugin.settings import settings_from_mapping
    from tests.region_ports import NoCosts

    rng = random.Random(2000 + seed)
    clock = FakeClock(1_000_000.0)
    shared = MemoryStore(clock=clock)
    settings = settings_from_mapping({}, environ={})
    upstream = StoringUpstream()
    regions = [
        CacheRegion(engine, settings, upstream=upstream, costs=NoCosts())
        for engine in jittery_engines(shared, rng, rng.randint(1, 3), clock)
    ]
    upstream.region = regions[0]
    await regions[0].store_response(_ctx(regions[0], 0), _answer("first"), upstream_ms=20.0)
    clock.now += 120  # past its TTL (60 s), within stale-while-revalidate (600 s)

    async def one(n: int) -> str:
        await asyncio.sleep(rng.random() * 0.05)  # requests keep arriving while the refresh runs
        region = regions[n % len(regions)]
        return (await region.lookup_response(_ctx(region, n))).outcome

    outcomes = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(1, rng.randint(5, 30)))), BOUND)
    assert set(outcomes) <= {"STALE", "HIT"} and "STALE" in outcomes
    for _ in range(100):  # the refresh runs in the background
        await asyncio.sleep(0.01)
        if all(not r.engine._background.tasks for r in regions):
            break
    assert upstream.refreshes == 1, outcomes


# --- the region as the proxy drives it: the fast path's read, then the hook path's lookup ----------


@pytest.mark.parametrize("seed", range(30))
async def test_a_burst_through_the_region_makes_one_upstream_call_whatever_the_reply_order(seed: int) -> None:
    """The same bursts through ``CacheRegion`` as the proxy calls it: most requests are read ahead by
    the fast path (``read_ahead``, which may take the fill lock), then every request is looked up on
    the hook path (``lookup_response``: the remembered miss, the single flight), the leader's answer
    is stored (``store_response``, which ends its flight) and the read's lock is given back at the
    end (``drop_read_ahead``)."""
    from litellm_cache_plugin.region import CacheRegion
    from litellm_cache_plugin.settings import settings_from_mapping
    from tests.region_ports import NoCosts, NoUpstream

    rng = random.Random(3000 + seed)
    shared = MemoryStore()
    settings = settings_from_mapping({}, environ={})
    regions = [
        CacheRegion(engine, settings, upstream=NoUpstream(), costs=NoCosts())
        for engine in jittery_engines(shared, rng, rng.randint(1, 3))
    ]
    upstream: list[int] = []

    async def one(n: int) -> str:
        region = regions[n % len(regions)]
        ctx = _ctx(region, n)  # a fresh call id per request; one key for all
        await asyncio.sleep(rng.random() * 0.01)
        read = await region.read_ahead(ctx, region.key_for(ctx)) if rng.random() < 0.8 else None
        try:
            if read is not None and read.raw is not None:
                return "HIT"
            lookup = await region.lookup_response(ctx)
            if lookup.entry is not None:
                return lookup.outcome
            upstream.append(n)
            await asyncio.sleep(0.02)  # the model answering
            await region.store_response(ctx, _answer(f"answer {n}"), upstream_ms=20.0)
            return "MISS"
        finally:
            region.drop_read_ahead(read)

    outcomes = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(rng.randint(5, 30)))), BOUND)
    assert len(upstream) == 1, (upstream, outcomes)
    await asyncio.sleep(0.05)
    lock_key, _ = regions[0].engine.flights.fill_lock(regions[0].key_for(_ctx(regions[0], 0)))
    assert await shared.acquire_lock(lock_key, "someone", 30)  # nothing left held
