"""Each request's decision is counted once per layer, in the stats and in telemetry alike."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
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
    assert (await plugin.region.lookup_response(ctx)).outcome == "MISS"
    plugin.engine.finish(plugin.region.key_for(ctx), None)  # the single flight this miss leads
    body = {"choices": [{"finish_reason": "stop", "message": {"content": "a"}}], "usage": {}}
    await plugin.engine.store_entry(
        plugin.region.key_for(ctx), orjson.dumps(body), tenant=ctx.tenant, model_group="g",
        model_version=ctx.request.model_version, ttl=60, upstream_ms=500.0,
        extra={"tok": [10, 20], "gpu": 0.25},
    )  # fmt: skip
    for _ in range(3):
        hit_ctx = plugin.context(_kwargs())
        assert hit_ctx is not None and (await plugin.region.lookup_response(hit_ctx)).outcome == "HIT"
    hot = plugin.context(_kwargs(temperature=0.9))
    assert hot is not None and (await plugin.region.lookup_response(hot)).outcome == "BYPASS"
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
    assert ctx.cacheable and (await plugin.region.lookup_response(ctx)).outcome == "BYPASS"  # no-cache
    assert "exact" not in plugin.engine.stats.snapshot()


async def test_coalesced_requests_are_counted_once_in_their_own_model_group() -> None:
    plugin = _plugin()
    leader = plugin.context(_kwargs())
    assert leader is not None
    assert (await plugin.region.lookup_response(leader)).outcome == "MISS"  # leads the single flight
    waiters = [plugin.context(_kwargs()) for _ in range(3)]
    pending = [
        asyncio.ensure_future(plugin.region.lookup_response(ctx)) for ctx in waiters if ctx is not None
    ]
    await asyncio.sleep(0.01)
    key = plugin.region.key_for(leader)
    body = {"choices": [{"finish_reason": "stop", "message": {"content": "a"}}], "usage": {}}
    entry = await plugin.engine.store_entry(
        key, orjson.dumps(body), tenant=leader.tenant, model_group="g",
        model_version=leader.request.model_version, ttl=60,
    )  # fmt: skip
    plugin.engine.finish(key, entry)
    assert [lookup.outcome for lookup in await asyncio.gather(*pending)] == ["HIT"] * 3

    exact = plugin.engine.stats.snapshot()["exact"]
    assert set(exact) == {"g"}  # no row for a made-up group ("-")
    row = exact["g"]
    assert (row["miss"], row["coalesced"], row["flight_waited"]) == (1, 3, 3)
    assert row["hit_ratio"] == 0.75


async def test_waiters_of_a_failed_flight_count_as_misses_of_their_group() -> None:
    plugin = _plugin()
    leader = plugin.context(_kwargs())
    assert leader is not None
    assert (await plugin.region.lookup_response(leader)).outcome == "MISS"
    waiters = [plugin.context(_kwargs()) for _ in range(2)]
    pending = [
        asyncio.ensure_future(plugin.region.lookup_response(ctx)) for ctx in waiters if ctx is not None
    ]
    await asyncio.sleep(0.01)
    plugin.engine.finish(plugin.region.key_for(leader), None)  # the upstream call failed: nothing to share
    assert [lookup.outcome for lookup in await asyncio.gather(*pending)] == ["MISS"] * 2
    exact = plugin.engine.stats.snapshot()["exact"]
    assert set(exact) == {"g"}
    assert (exact["g"]["miss"], exact["g"].get("coalesced", 0), exact["g"]["flight_waited"]) == (3, 0, 2)


class _RefusingIndex:
    """A semantic index whose best candidate the guard refused (the region only reads ``resolve``)."""

    def __init__(self) -> None:
        from litellm_cache_plugin.semantic import SemanticLookup

        self.result = SemanticLookup("refused", None, (_Refusal("number"),))

    async def start(self) -> None:
        return None

    async def resolve(self, scope: str, text: str, *, context: Sequence[Any] = ()) -> Any:
        return self.result


class _Refusal:
    def __init__(self, rule: str) -> None:
        self.rule = rule


async def test_semantic_refusals_are_counted_with_their_rule_and_lower_the_hit_ratio() -> None:
    settings = settings_from_mapping(
        {"backend": "memory://", "versions": {"ollama_digest": False}}, environ={}
    )
    plugin = CachePlugin(settings)
    plugin.region.semantic = _RefusingIndex()
    ctx = plugin.context(_kwargs())
    assert ctx is not None
    ctx = dataclasses.replace(ctx, semantic=True)
    recorded: list[tuple[Any, ...]] = []
    original = plugin.engine.account

    def account(layer: str, group: str, result: str, reason: str | None = None, **rest: Any) -> None:
        recorded.append((layer, result, reason))
        original(layer, group, result, reason, **rest)

    plugin.engine.account = account  # type: ignore[method-assign]
    assert (await plugin.region.lookup_response(ctx)).outcome == "MISS"
    assert ("semantic", "refused", "number") in recorded  # the rule is the reason (stats, metrics)
    row = plugin.engine.stats.snapshot()["semantic"]["g"]
    assert row["refused"] == 1 and row.get("miss", 0) == 0
    assert row["hit_ratio"] == 0.0  # a refusal counts as looked up and not served
