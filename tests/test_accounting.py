"""Each request's decision is counted once per layer, in the stats and in telemetry alike."""

from __future__ import annotations

import os
from typing import Any

import orjson

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.integrations.litellm import REFRESH_FIELD, CachePlugin, refresh_call
from litellm_cache_plugin.policy.keys import Identity
from litellm_cache_plugin.settings import settings_from_mapping


def _plugin() -> CachePlugin:
    settings = settings_from_mapping(
        {"backend": "memory://", "versions": {"ollama_digest": False}, "models": {
            "g": {"prices": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}
        }},
        environ={},
    )  # fmt: skip
    return CachePlugin(settings)


def _kwargs(**extra: Any) -> dict[str, Any]:
    metadata = {"model_group": "g", "user_api_key_team_id": "t", **extra.pop("metadata", {})}
    return {
        "model": "ollama_chat/x",
        "messages": [{"role": "user", "content": "same question"}],
        "temperature": 0,
        "metadata": metadata,
        **extra,
    }


async def test_hits_misses_bypasses_and_savings_are_counted_once() -> None:
    plugin = _plugin()
    ctx = plugin.context(_kwargs())
    assert ctx is not None
    assert (await plugin.lookup_response(ctx)).outcome == "MISS"
    plugin.engine.finish(plugin.key_for(ctx), None)  # the single flight this miss leads
    body = {"choices": [{"finish_reason": "stop", "message": {"content": "a"}}], "usage": {}}
    await plugin.engine.store_entry(
        plugin.key_for(ctx), orjson.dumps(body), tenant=ctx.tenant, model_group="g",
        model_version=ctx.request.model_version, ttl=60, upstream_ms=500.0,
        extra={"tok": [10, 20], "gpu": 0.25},
    )  # fmt: skip
    for _ in range(3):
        hit_ctx = plugin.context(_kwargs())
        assert hit_ctx is not None and (await plugin.lookup_response(hit_ctx)).outcome == "HIT"
    hot = plugin.context(_kwargs(temperature=0.9))
    assert hot is not None and (await plugin.lookup_response(hot)).outcome == "BYPASS"
    row = plugin.engine.stats.snapshot()["exact"]["g"]
    assert (row["hit"], row["miss"], row["bypass"]) == (3, 1, 1)
    assert row["hit_ratio"] == 0.75
    assert row["input_tokens_saved"] == 30 and row["output_tokens_saved"] == 60
    assert row["gpu_seconds_saved"] == 0.75
    assert abs(row["cost_saved_usd"] - 3 * (10e-6 + 40e-6)) < 1e-12
    assert 3 * 400 < row["latency_saved_ms"] <= 3 * 500


async def test_the_plugins_own_refresh_calls_are_not_counted_as_lookups() -> None:
    plugin = _plugin()
    token = plugin.signer.sign(Identity(team_id="t"))
    source = _kwargs(metadata={"lcp_identity": token, "something": "else"})
    call = refresh_call(source)
    assert call["metadata"][REFRESH_FIELD] is True and "something" not in call["metadata"]
    ctx = plugin.context({**source, "metadata": call["metadata"], "cache": call["cache"]})
    assert ctx is not None
    assert ctx.cacheable and (await plugin.lookup_response(ctx)).outcome == "BYPASS"  # no-cache
    assert "exact" not in plugin.engine.stats.snapshot()
