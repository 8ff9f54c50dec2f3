"""The KV-prefix layer on a real ``litellm.Router`` in front of several Ollama simulator instances.

Each simulator instance has its own KV prefix cache and reports how many prompt tokens it reused, so
these tests measure what affinity routing is for, on the servers themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.integrations.custom_logger import CustomLogger

import litellm_cache_plugin
from benchmarks.prefix_affinity import (
    MODEL_GROUP,
    model_list,
    run_once,
    system_prompt,
    workload,
)
from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.integrations.prefix import ROUTE_FIELD, PrefixRouting
from litellm_cache_plugin.prefix import affinity_key, rendezvous_order
from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread

_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


@pytest.fixture
def fresh_callbacks() -> Iterator[None]:
    """LiteLLM keeps one logger per class in its callback lists: drop plugins other tests attached
    (they would shadow ours) and put everything back afterwards."""
    saved = {name: list(getattr(litellm, name)) for name in _CALLBACK_LISTS}
    saved_cache = litellm.cache
    for name in _CALLBACK_LISTS:
        setattr(
            litellm,
            name,
            [cb for cb in getattr(litellm, name) if not isinstance(cb, (CachePlugin, PrefixRouting))],
        )
    yield
    for name, value in saved.items():
        setattr(litellm, name, value)
    litellm.cache = saved_cache


@pytest.fixture
def servers() -> Iterator[list[SimulatorThread]]:
    config = SimulatorConfig(latency_ms=5, tokens_per_second=5000, prompt_tokens_per_second=5000)
    started = [SimulatorThread(config).start() for _ in range(3)]
    yield started
    for server in started:
        server.stop()


def chat_calls(server: SimulatorThread) -> int:
    return int(server.simulator.stats()["requests"]["chat"])


def attach(router: litellm.Router, **prefix: Any) -> CachePlugin:
    return litellm_cache_plugin.attach(
        {"layers": {"exact": {"enabled": False}, "prefix": {"enabled": True, **prefix}}}, router=router
    )


async def test_affinity_raises_prefix_reuse(fresh_callbacks: None) -> None:
    """The acceptance workload: 4 system prompts x 60 distinct questions, 3 servers with 4 KV slots."""
    requests = workload(prompts=4, per_prompt=60)
    runs = {
        mode: await run_once(mode, instances=3, slots=4, requests=requests, concurrency=6)
        for mode in ("shuffle", "affinity")
    }
    shuffle, affinity = runs["shuffle"], runs["affinity"]
    print(
        f"\nreuse share: shuffle {shuffle.share:.3f}, affinity {affinity.share:.3f}; prompt-eval seconds: "
        f"shuffle {shuffle.prompt_eval_seconds:.2f}, affinity {affinity.prompt_eval_seconds:.2f}"
    )
    assert affinity.share >= 0.7
    assert shuffle.share <= affinity.share - 0.1
    assert affinity.prompt_eval_seconds <= 0.75 * shuffle.prompt_eval_seconds
    # The plugin's own measurement (from prompt_eval_count) agrees with what the servers counted.
    for run in runs.values():
        stats = run.plugin_stats
        assert stats["hit"] + stats["miss"] == len(requests)
        assert stats["input_tokens_saved"] / stats["prompt_tokens"] == pytest.approx(run.share, abs=0.05)
        assert stats["gpu_seconds_saved"] > 0
    assert runs["affinity"].plugin_stats["routed"] == len(requests)
    assert "routed" not in runs["shuffle"].plugin_stats


async def test_requests_survive_a_deployment_that_is_down(
    servers: list[SimulatorThread], fresh_callbacks: None
) -> None:
    router = litellm.Router(model_list=model_list(servers), num_retries=2)
    plugin = attach(router)
    assert plugin.prefix is not None
    prompt = system_prompt("billing")
    ids = [f"sim-{i}" for i in range(len(servers))]
    order = rendezvous_order(str(affinity_key([{"role": "system", "content": prompt}], 2048)), ids)
    home, second = servers[ids.index(order[0])], servers[ids.index(order[1])]

    async def ask(i: int) -> Any:
        messages = [{"role": "system", "content": prompt}, {"role": "user", "content": f"question {i}?"}]
        return await router.acompletion(model=MODEL_GROUP, messages=messages, temperature=0)

    await ask(0)
    assert chat_calls(home) == 1
    home.stop()
    answers = [await ask(i) for i in range(1, 5)] + list(
        await asyncio.gather(*(ask(i) for i in range(5, 11)))
    )
    assert all(a.choices[0].message.content for a in answers)
    # the prefix moved to its second choice (the one that warms up instead of all of them)
    assert chat_calls(second) >= 8
    assert order[0] in plugin.prefix.failures.suspects()
    await asyncio.sleep(0.2)
    assert plugin.prefix.inflight.loads() == {}


async def test_failing_deployment_is_passed_over(
    servers: list[SimulatorThread], fresh_callbacks: None
) -> None:
    router = litellm.Router(model_list=model_list(servers), num_retries=2)
    plugin = attach(router, affinity={"failure_cooldown": 30})
    assert plugin.prefix is not None
    prompt = system_prompt("shipping")
    ids = [f"sim-{i}" for i in range(len(servers))]
    home_id = rendezvous_order(str(affinity_key([{"role": "system", "content": prompt}], 2048)), ids)[0]
    home = servers[ids.index(home_id)]
    failing = await asyncio.to_thread(
        httpx.post, f"{home.url}/_sim/fail", json={"count": 100, "status": 500}, timeout=5
    )
    failing.raise_for_status()
    for i in range(6):
        messages = [{"role": "system", "content": prompt}, {"role": "user", "content": f"where is {i}?"}]
        answer = await router.acompletion(model=MODEL_GROUP, messages=messages, temperature=0)
        assert answer.choices[0].message.content
    # one failed attempt, then the home is avoided for failure_cooldown seconds
    assert chat_calls(home) == 1
    assert home_id in plugin.prefix.failures.suspects()


class _SeenByServer(CustomLogger):
    """Registered after the plugin: sees the messages as they leave for the deployment."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any]:
        self.messages.append(kwargs.get("messages"))
        return kwargs


async def test_equivalent_system_prompts_leave_byte_identical(
    servers: list[SimulatorThread], fresh_callbacks: None
) -> None:
    canonical = "You are the ACME billing assistant.\nAnswer in one sentence."
    router = litellm.Router(model_list=model_list(servers))
    attach(router, canonical_system_prompts=[canonical])
    seen = _SeenByServer()
    litellm.callbacks.append(seen)
    variants = [
        canonical,
        "You are the ACME billing assistant.  \r\nAnswer in one sentence.\r\n",
        "  You are the  ACME billing assistant. \nAnswer in one sentence.  ",
    ]
    for variant in variants[:2]:
        messages = [{"role": "system", "content": variant}, {"role": "user", "content": "refund?"}]
        await router.acompletion(model=MODEL_GROUP, messages=messages, temperature=0)
    messages = [{"role": "system", "content": variants[2]}, {"role": "user", "content": "refund?"}]
    await router.acompletion(model=MODEL_GROUP, messages=messages, temperature=0)
    assert [m[0]["content"] for m in seen.messages] == [canonical] * 3
    assert messages[0]["content"] == variants[2]  # the caller's list is not modified
    # and all three went to the same server
    assert sorted(chat_calls(s) for s in servers) == [0, 0, 3]


async def test_route_leaves_non_chat_calls_and_single_deployments_alone(fresh_callbacks: None) -> None:
    plugin = litellm_cache_plugin.attach({"layers": {"prefix": {"enabled": True}}})
    assert plugin.prefix is not None
    deployments = [{"model_info": {"id": "a"}}, {"model_info": {"id": "b"}}]
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    placeholder = [{"role": "user", "content": "files-api-fake-text"}]
    route = plugin.prefix.route
    assert route("g", deployments, placeholder, {}) is None
    assert route("g", deployments[:1], chat, {}) is None
    assert route("g", deployments, None, {}) is None
    kwargs: dict[str, Any] = {"_retry_skipped_deployment_ids": ["a"]}
    assert route("g", deployments, chat, kwargs) == deployments[1]
    assert isinstance(kwargs["metadata"][ROUTE_FIELD], str)
    # "order" tiers: only the lowest healthy tier is a candidate
    tiers = [
        {"model_info": {"id": "a"}, "litellm_params": {"order": 2}},
        {"model_info": {"id": "b"}, "litellm_params": {"order": 1}},
    ]
    assert route("g", tiers, chat, {}) == tiers[1]
    # a group without the layer is not routed
    off = litellm_cache_plugin.attach({"models": {"g": {"layers": {"prefix": {"enabled": False}}}}})
    assert off.prefix is None


async def test_openai_style_cached_tokens_are_recorded(fresh_callbacks: None) -> None:
    plugin = litellm_cache_plugin.attach({"layers": {"prefix": {"enabled": True}}})
    assert plugin.prefix is not None
    usage = {"prompt_tokens": 2000, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1536}}
    kwargs = {
        "call_type": "acompletion",
        "custom_llm_provider": "openai",
        "model": "gpt-x",
        "litellm_params": {"metadata": {"model_group": "gpt"}},
    }
    reuse = plugin.prefix.measure(kwargs, {"usage": usage})
    assert reuse is not None and reuse.reused_tokens == 1536
    assert plugin.prefix.measure({**kwargs, "cache_hit": True}, {"usage": usage}) is None
    row = plugin.engine.stats.snapshot()["prefix"]["gpt"]
    assert (row["hit"], row["prompt_tokens"], row["input_tokens_saved"]) == (1, 2000, 1536)
