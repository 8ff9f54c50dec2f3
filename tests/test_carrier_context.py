"""The carrier builds a call's context once for LiteLLM's key-then-lookup pair, and only for that pair.

LiteLLM's caching handler calls ``get_cache_key(**kwargs)`` and right after it
``async_get_cache(cache_key=<that key>, **kwargs)`` with the same shallow copy of the call's kwargs.
The context (identity check, eligibility, canonical request and its key) built for the first is used
by the second; any other lookup builds its own.
"""

from __future__ import annotations

import json
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping


class Auth:
    def __init__(self, team: str) -> None:
        self.api_key = self.token = f"sk-{team}"
        self.team_id = team
        self.user_id = None
        self.org_id = None


ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "llama3.2",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "42"}}],
}


@pytest.fixture
def plugin() -> CachePlugin:
    return CachePlugin(
        settings_from_mapping({"backend": "memory://", "telemetry": {"enabled": False}}, environ={}),
        proxy_mode=True,
    )


async def call_kwargs(
    plugin: CachePlugin, team: str, call_id: str, prompt: str = "what is 6*7?"
) -> dict[str, Any]:
    """What the caching handler hands ``litellm.cache`` after the proxy's pre-call hook ran."""
    data: dict[str, Any] = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "metadata": {},
        "litellm_call_id": call_id,
        "proxy_server_request": {"headers": {}},
    }
    await plugin.async_pre_call_hook(Auth(team), None, data, "completion")
    kwargs = {**data, "model": "ollama_chat/llama3.2:1b", "custom_llm_provider": "ollama_chat"}
    kwargs["metadata"] = {**data["metadata"], "model_group": "llama3.2"}
    return kwargs


def counting_contexts(plugin: CachePlugin) -> list[str | None]:
    built: list[str | None] = []
    original = plugin.carrier.context

    def context(kwargs: Any) -> Any:
        built.append(kwargs.get("litellm_call_id"))
        return original(kwargs)

    plugin.carrier.context = context
    return built


async def test_the_lookup_after_get_cache_key_reuses_its_context_and_serves(plugin: CachePlugin) -> None:
    stored = await call_kwargs(plugin, "team-a", "call-1")
    await plugin.carrier.async_add_cache(json.dumps(ANSWER), **stored)
    kwargs = await call_kwargs(plugin, "team-a", "call-2")
    built = counting_contexts(plugin)
    key = plugin.carrier.get_cache_key(**kwargs)
    found = await plugin.carrier.async_get_cache(cache_key=key, **kwargs)
    assert found is not None and found["choices"][0]["message"]["content"] == "42"
    assert built == ["call-2"]  # one context for the key and the lookup


async def test_a_second_lookup_of_the_same_call_builds_its_own(plugin: CachePlugin) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    built = counting_contexts(plugin)
    key = plugin.carrier.get_cache_key(**kwargs)
    await plugin.carrier.async_get_cache(cache_key=key, **kwargs)
    await plugin.carrier.async_get_cache(cache_key=key, **kwargs)
    assert built == ["call-1", "call-1"]  # the kept context is taken once


@pytest.mark.parametrize("change", ["call_id", "key", "identity", "messages"])
async def test_a_lookup_that_is_not_the_keyed_call_builds_its_own(plugin: CachePlugin, change: str) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    other = await call_kwargs(plugin, "team-b", "call-1")
    built = counting_contexts(plugin)
    key = plugin.carrier.get_cache_key(**kwargs)
    lookup = dict(kwargs)
    if change == "call_id":
        lookup["litellm_call_id"] = "call-9"
    elif change == "key":
        key = key + "x"
    elif change == "identity":
        lookup["metadata"] = other["metadata"]
    else:
        lookup["messages"] = [dict(m) for m in kwargs["messages"]]  # equal, but not the same object
    await plugin.carrier.async_get_cache(cache_key=key, **lookup)
    assert len(built) == 2


async def test_another_tenants_lookup_with_the_keyed_call_id_gets_nothing(plugin: CachePlugin) -> None:
    # Team a's answer is stored; team b, reusing a's call id and key, must not be served it.
    stored = await call_kwargs(plugin, "team-a", "call-1")
    await plugin.carrier.async_add_cache(json.dumps(ANSWER), **stored)
    asked = await call_kwargs(plugin, "team-a", "call-2")
    key = plugin.carrier.get_cache_key(**asked)
    intruder = await call_kwargs(plugin, "team-b", "call-2")
    assert await plugin.carrier.async_get_cache(cache_key=key, **intruder) is None


# --- the write of a miss's answer uses the context the miss was looked up with ---------------------


async def test_the_write_after_a_miss_uses_the_lookups_context_and_stores_under_its_key(
    plugin: CachePlugin,
) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    built = counting_contexts(plugin)
    key = plugin.carrier.get_cache_key(**kwargs)
    assert await plugin.carrier.async_get_cache(cache_key=key, **kwargs) is None
    await plugin.carrier.async_add_cache(json.dumps(ANSWER), **dict(kwargs))  # LiteLLM's shallow copy
    assert built == ["call-1"]  # one context for the key, the lookup and the write
    again = await call_kwargs(plugin, "team-a", "call-2")
    found = await plugin.carrier.async_get_cache(cache_key=plugin.carrier.get_cache_key(**again), **again)
    assert found is not None and found["choices"][0]["message"]["content"] == "42"


@pytest.mark.parametrize("change", ["identity", "messages", "cache", "twice"])
async def test_a_write_that_is_not_the_looked_up_call_builds_its_own(
    plugin: CachePlugin, change: str
) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    other = await call_kwargs(plugin, "team-b", "call-1")
    key = plugin.carrier.get_cache_key(**kwargs)
    await plugin.carrier.async_get_cache(cache_key=key, **kwargs)
    built = counting_contexts(plugin)
    write = dict(kwargs)
    if change == "identity":
        write["metadata"] = other["metadata"]
    elif change == "messages":
        write["messages"] = [dict(m) for m in kwargs["messages"]]  # equal, but not the same object
    elif change == "cache":
        write["cache"] = {"no-store": True}
    else:
        await plugin.carrier.async_add_cache(json.dumps(ANSWER), **write)
        built.clear()  # the first write took the kept context; a second one builds its own
    await plugin.carrier.async_add_cache(json.dumps(ANSWER), **write)
    assert built == ["call-1"]


async def test_another_tenants_write_with_the_looked_up_call_id_is_stored_as_its_own(
    plugin: CachePlugin,
) -> None:
    asked = await call_kwargs(plugin, "team-a", "call-1")
    assert (
        await plugin.carrier.async_get_cache(cache_key=plugin.carrier.get_cache_key(**asked), **asked) is None
    )
    intruder = await call_kwargs(plugin, "team-b", "call-1")
    await plugin.carrier.async_add_cache(json.dumps(ANSWER), **intruder)
    # Team a's entry was not written by team b's answer; team b's own entry was.
    a = await call_kwargs(plugin, "team-a", "call-2")
    assert await plugin.carrier.async_get_cache(cache_key=plugin.carrier.get_cache_key(**a), **a) is None
    b = await call_kwargs(plugin, "team-b", "call-3")
    found = await plugin.carrier.async_get_cache(cache_key=plugin.carrier.get_cache_key(**b), **b)
    assert found is not None


async def test_a_failed_call_drops_its_kept_context(plugin: CachePlugin) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    await plugin.carrier.async_get_cache(cache_key=plugin.carrier.get_cache_key(**kwargs), **kwargs)
    assert "call-1" in plugin.carrier._missed
    await plugin.async_log_failure_event(kwargs, None, None, None)
    assert "call-1" not in plugin.carrier._missed
