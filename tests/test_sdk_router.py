"""The same plugin attached to plain ``litellm.acompletion`` and to a ``litellm.Router`` (no proxy)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

import litellm_cache_plugin
from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(latency_ms=20)) as thread:
        yield thread


@pytest.fixture
def detach() -> Iterator[None]:
    previous_cache, previous_callbacks = litellm.cache, list(litellm.callbacks)
    yield
    litellm.cache = previous_cache
    litellm.callbacks = previous_callbacks


def chat_calls(sim: SimulatorThread) -> int:
    return int(httpx.get(f"{sim.url}/_sim/stats").json()["requests"]["chat"])


async def settle() -> None:
    # LiteLLM writes a miss in a background task
    for _ in range(50):
        await asyncio.sleep(0.02)


async def test_plain_acompletion(sim: SimulatorThread, detach: None) -> None:
    litellm_cache_plugin.attach({"backend": "memory://"})
    messages = [{"role": "user", "content": f"sdk {uuid.uuid4()}"}]
    kwargs: dict[str, Any] = {"model": "ollama_chat/llama3.2:1b", "api_base": sim.url, "messages": messages}
    before = chat_calls(sim)
    first = await litellm.acompletion(**kwargs, temperature=0)
    await settle()
    second = await litellm.acompletion(**kwargs, temperature=0)
    assert second._hidden_params.get("cache_hit") is True
    assert second.choices[0].message.content == first.choices[0].message.content
    assert chat_calls(sim) == before + 1

    # a different tenant (the application says who the caller is) does not share the entry
    other = await litellm.acompletion(**kwargs, temperature=0, metadata={"user_api_key_team_id": "other"})
    assert not other._hidden_params.get("cache_hit")
    # non-deterministic requests always go upstream
    await litellm.acompletion(**kwargs, temperature=0.9)
    await litellm.acompletion(**kwargs, temperature=0.9)
    assert chat_calls(sim) == before + 4


async def test_router(sim: SimulatorThread, detach: None) -> None:
    router = litellm.Router(
        model_list=[
            {
                "model_name": "chat",
                "litellm_params": {"model": "ollama_chat/llama3.2:1b", "api_base": sim.url},
            },
        ]
    )
    plugin = litellm_cache_plugin.attach({"backend": "memory://", "ttl": 60}, router=router)
    messages = [{"role": "user", "content": f"router {uuid.uuid4()}"}]
    before = chat_calls(sim)
    first = await router.acompletion(model="chat", messages=messages, temperature=0)
    await settle()
    second = await router.acompletion(model="chat", messages=messages, temperature=0)
    assert second._hidden_params.get("cache_hit") is True
    assert second.choices[0].message.content == first.choices[0].message.content
    assert chat_calls(sim) == before + 1
    assert plugin.engine.stats.snapshot()["exact"]["chat"]["hit"] == 1

    stream = await router.acompletion(model="chat", messages=messages, temperature=0, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert text == first.choices[0].message.content
    assert chat_calls(sim) == before + 1


def test_importing_the_package_has_no_side_effects() -> None:
    import subprocess
    import sys

    code = (
        "import sys, litellm_cache_plugin; "
        "assert 'litellm' not in sys.modules, 'litellm imported'; "
        "assert 'litellm_cache_plugin.integrations.litellm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
