"""Reads reused within one request (fast-path probe -> lookup), and memoized hit-logging lookups."""

from __future__ import annotations

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
