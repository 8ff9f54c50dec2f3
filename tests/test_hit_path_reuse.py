"""Reads reused within one request (fast-path probe -> lookup), and memoized hit-logging lookups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from litellm_cache_plugin.engine import CacheEngine, Prefetched
from litellm_cache_plugin.integrations import fast_path
from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.settings import settings_from_mapping
from litellm_cache_plugin.store.memory import MemoryStore
from tests.test_carrier_context import ANSWER

A, B = Tenant("team", "a"), Tenant("team", "b")


class CountingStore(MemoryStore):
    """A memory store that counts the reads the engine makes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        self.reads += 1
        return await super().get_with_counters(key, counter_keys)


async def lookup(engine: CacheEngine, tenant: Tenant, prefetched: Prefetched | None = None) -> Any:
    return await engine.lookup(
        "lcp:x:k",
        tenant=tenant,
        model_group="m",
        model_version="1",
        controls=RequestControls(),
        prefetched=prefetched,
    )


async def test_a_read_of_the_same_key_and_counters_is_judged_without_reading_again() -> None:
    store = CountingStore()
    engine = CacheEngine(store, namespace="lcp")
    await engine.store_entry("lcp:x:k", b'{"a":1}', tenant=A, model_group="m", model_version="1", ttl=60)
    read = await engine.read("lcp:x:k", tenant=A, model_group="m")
    assert store.reads == 1 and read.raw is not None
    found = await lookup(engine, A, read)
    assert (found.outcome, store.reads) == ("HIT", 1)
    # Another tenant has other counters (and, in real keys, another key): never judged from A's read.
    found = await lookup(engine, B, read)
    assert (found.outcome, found.reason, store.reads) == ("MISS", "tenant_mismatch", 2)


async def test_an_invalidation_after_the_read_is_seen_by_a_lookup_that_reads() -> None:
    store = CountingStore()
    engine = CacheEngine(store, namespace="lcp")
    await engine.store_entry("lcp:x:k", b'{"a":1}', tenant=A, model_group="m", model_version="1", ttl=60)
    read = await engine.read("lcp:x:k", tenant=A, model_group="m")
    await engine.invalidate_model("m")
    assert (await lookup(engine, A)).reason == "invalidated"
    # A prefetched read is a snapshot like any read: reused only moments later, within one request.
    assert (await lookup(engine, A, read)).outcome == "HIT"


async def test_recent_misses_are_reused_once_and_only_briefly() -> None:
    plugin = CachePlugin(settings_from_mapping({"telemetry": {"enabled": False}}, environ={}))
    store = CountingStore()
    plugin.engine.store = store
    absent = await plugin.engine.read("lcp:x:k", tenant=A, model_group="m")
    plugin.region.remember_miss(absent)
    assert plugin.region._recent_miss("lcp:x:k") is absent
    assert plugin.region._recent_miss("lcp:x:k") is None  # taken once
    plugin.region.remember_miss(absent)
    plugin.region._recent_misses["lcp:x:k"] = (time.monotonic() - 5, absent)
    assert plugin.region._recent_miss("lcp:x:k") is None  # too old
    await store.set("lcp:x:k", b"x", 60)
    present = await plugin.engine.read("lcp:x:k", tenant=A, model_group="m")
    plugin.region.remember_miss(present)
    assert not plugin.region._recent_misses  # only absence is ever reused


def test_model_cost_lookup_is_memoized_only_while_a_hit_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    from litellm.litellm_core_utils.litellm_logging import StandardLoggingPayloadSetup

    calls: list[str] = []

    def fake(
        base_model: str | None,
        custom_pricing: bool | None,
        custom_llm_provider: str | None,
        init_response_obj: object,
        api_base: str | None = None,
    ) -> dict[str, Any]:
        calls.append(str(base_model))
        return {"model_map_key": "m", "model_map_value": {"input_cost_per_token": 0.0}}

    monkeypatch.setattr(StandardLoggingPayloadSetup, "get_model_cost_information", staticmethod(fake))
    monkeypatch.setattr(fast_path, "_MODEL_COST_INFO", type(fast_path._MODEL_COST_INFO)())
    fast_path._install_model_cost_memo()
    fast_path._install_model_cost_memo()  # idempotent
    lookup_cost = StandardLoggingPayloadSetup.get_model_cost_information
    response = {"model": "llama3.2"}
    lookup_cost("m", None, "ollama", response)
    lookup_cost("m", None, "ollama", response)
    assert calls == ["m", "m"]  # outside hit logging: LiteLLM's function every time
    token = fast_path._LOGGING_HIT.set(True)
    try:
        first = lookup_cost("m", None, "ollama", response)
        second = lookup_cost("m", None, "ollama", response)
        lookup_cost("other", None, "ollama", response)
        lookup_cost("m", None, "ollama", {"model": "another"})
    finally:
        fast_path._LOGGING_HIT.reset(token)
    assert calls == ["m", "m", "m", "other", "m"]
    assert first == second and first is not second  # a copy per payload
    assert first["model_map_value"] is not second["model_map_value"]


# --- the fill lock taken by the read ahead of a miss (fast path probe -> hook path's claim) ---------


class LockCountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.inside = False

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        self.calls.append("read_or_lock")
        self.inside = True  # the in-process store takes the lock through acquire_lock itself
        try:
            return await super().get_with_counters_or_lock(key, counter_keys, lock_key, owner, ttl)
        finally:
            self.inside = False

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        if not self.inside:
            self.calls.append("acquire_lock")
        return await super().acquire_lock(key, owner, ttl)

    async def release_lock(self, key: str, owner: str) -> bool:
        self.calls.append("release_lock")
        return await super().release_lock(key, owner)


class Auth:
    api_key = token = "sk-a"
    team_id = "a"
    user_id = org_id = None


async def proxy_context(plugin: CachePlugin, call_id: str, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "what is 6*7?"}],
        "temperature": 0,
        "metadata": {},
        "litellm_call_id": call_id,
        "proxy_server_request": {"headers": {}},
        **extra,
    }
    await plugin.async_pre_call_hook(Auth(), None, data, "completion")
    kwargs = {**data, "model": "ollama_chat/llama3.2:1b", "custom_llm_provider": "ollama_chat"}
    kwargs["metadata"] = {**data["metadata"], "model_group": "m"}
    ctx = plugin.context(kwargs)
    assert ctx is not None and ctx.cacheable
    return ctx


async def settle() -> None:
    """Let the engine's background tasks (a lock's release) run."""
    for _ in range(5):
        await asyncio.sleep(0)


def lock_plugin(**settings: Any) -> tuple[CachePlugin, LockCountingStore]:
    plugin = CachePlugin(
        settings_from_mapping({"telemetry": {"enabled": False}, **settings}, environ={}), proxy_mode=True
    )
    store = LockCountingStore()
    plugin.engine.store = store
    return plugin, store


async def test_a_miss_read_ahead_takes_the_fill_lock_and_its_lookup_leads_with_it() -> None:
    plugin, store = lock_plugin()
    ahead = await proxy_context(plugin, "call-1")
    read = await plugin.region.read_ahead(ahead, plugin.region.key_for(ahead))
    assert read.raw is None and read.lock_owner is not None
    ctx = await proxy_context(plugin, "call-1")  # the hook path's own context, after auth
    lookup = await plugin.region.lookup_response(ctx)
    assert lookup.outcome == "MISS"
    assert store.calls == ["read_or_lock"]  # one round trip: no second read, no second lock call
    assert plugin.region.awaited("call-1") is False
    plugin.region.drop_read_ahead(read)  # the request is over: the flight owns the lock now
    assert store.calls == ["read_or_lock"]
    await plugin.region.store_response(ctx, ANSWER, upstream_ms=5.0)
    await settle()
    assert store.calls == ["read_or_lock", "release_lock"]  # released once, by the flight


async def test_a_lock_read_ahead_that_no_lookup_took_is_given_back_at_the_end() -> None:
    plugin, store = lock_plugin()
    ahead = await proxy_context(plugin, "call-1")
    read = await plugin.region.read_ahead(ahead, plugin.region.key_for(ahead))
    plugin.region.drop_read_ahead(read)  # e.g. refused by auth: no lookup ever claimed
    await settle()
    assert store.calls == ["read_or_lock", "release_lock"]
    lock_key, _ = plugin.engine.flights.fill_lock(read.key)
    assert await store.acquire_lock(lock_key, "someone", 30)  # free again


@pytest.mark.parametrize(
    ("settings", "extra"),
    [
        ({"single_flight": {"enabled": False}}, {}),  # no flight to lead: no lock
        ({}, {"cache": {"no-store": True}}),  # never stored, so nobody may wait for it
    ],
)
async def test_a_read_ahead_takes_no_lock_when_its_miss_would_not_lead_a_flight(
    settings: dict[str, Any], extra: dict[str, Any]
) -> None:
    plugin, store = lock_plugin(**settings)
    ahead = await proxy_context(plugin, "call-1", **extra)
    read = await plugin.region.read_ahead(ahead, plugin.region.key_for(ahead))
    assert read.raw is None and read.lock_owner is None
    assert "acquire_lock" not in store.calls
    lock_key, _ = plugin.engine.flights.fill_lock(read.key)
    assert await store.acquire_lock(lock_key, "someone", 30)
