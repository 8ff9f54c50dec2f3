"""LiteLLM's own SDK as a client of the proxy (``model="litellm_proxy/<group>"``), fast path on and off.

What such a client can see of the cache: every response header, prefixed ``llm_provider-``, in
``response._hidden_params["additional_headers"]`` (streamed or not), and on non-streamed chat hits
the body marker as ``response.cached``. ``_hidden_params["cache_hit"]`` is the SDK's own cache's flag
and stays unset (see README, "LiteLLM's SDK as a client of the proxy", and
``test_admin_answers.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import OK, FastClient, fast_client, unique
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


# "reuse": the fast path with fast_path.auth_reuse_seconds (reused verdicts and request setups) and no
# logging integration (its hits are not logged).
@pytest.fixture(params=["memory", "reuse", "off"], ids=["fast_path", "fast_path_reused", "hook_path"])
def proxy(
    request: pytest.FixtureRequest, fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, request.param)


def _call(client: FastClient, **kwargs: Any) -> dict[str, Any]:
    return {"api_base": client.proxy.url, "api_key": OK, "max_retries": 0, "timeout": 60, **kwargs}


def _header(response: Any, name: str) -> str | None:
    headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
    value = headers.get(f"llm_provider-{name}")
    return str(value) if value is not None else None


def _wait_more(probe: Callable[[], int], before: int) -> None:
    deadline = time.monotonic() + 8
    while probe() <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert probe() > before, "the answer was not stored in time"


async def _chat(client: FastClient, messages: Any, **params: Any) -> Any:
    import litellm

    return await litellm.acompletion(
        **_call(client, model="litellm_proxy/llama3.2", messages=messages, temperature=0, **params)
    )


async def _warm(client: FastClient, messages: Any, **params: Any) -> Any:
    stores = client.counter("exact", "llama3.2", "store")
    miss = await _chat(client, messages, **params)
    assert _header(miss, "x-cache") == "MISS"
    _wait_more(lambda: client.counter("exact", "llama3.2", "store"), stores)
    return miss


async def _stream(client: FastClient, messages: Any, **params: Any) -> tuple[Any, str, list[Any]]:
    response = await _chat(client, messages, stream=True, **params)
    chunks = [chunk async for chunk in response]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return response, text, chunks


async def test_chat_miss_and_hit_in_headers_and_body(proxy: FastClient) -> None:
    messages = [{"role": "user", "content": unique("Asked through LiteLLM's SDK.")}]
    miss = await _warm(proxy, messages)
    upstream = proxy.upstream_calls()
    hit = await _chat(proxy, messages)
    assert _header(hit, "x-cache") == "HIT"
    assert _header(hit, "x-cache-layer") == "exact"
    assert getattr(hit, "cached", None) is True
    assert hit.choices[0].message.content == miss.choices[0].message.content
    assert hit._hidden_params.get("cache_hit") is None  # the SDK's own cache's flag
    stream, text, _ = await _stream(proxy, messages)
    assert _header(stream, "x-cache") == "HIT" and text == miss.choices[0].message.content
    assert proxy.upstream_calls() == upstream


async def test_streamed_usage_is_the_same_on_hit_and_miss(proxy: FastClient) -> None:
    messages = [{"role": "user", "content": unique("Usage through LiteLLM's SDK.")}]
    stores = proxy.counter("exact", "llama3.2", "store")
    options = {"stream_options": {"include_usage": True}}
    miss, miss_text, miss_chunks = await _stream(proxy, messages, **options)
    assert _header(miss, "x-cache") == "MISS"
    _wait_more(lambda: proxy.counter("exact", "llama3.2", "store"), stores)
    hit, hit_text, hit_chunks = await _stream(proxy, messages, **options)
    assert _header(hit, "x-cache") == "HIT" and hit_text == miss_text

    def usage(chunks: list[Any]) -> tuple[int, int, int]:
        found = [c.usage for c in chunks if getattr(c, "usage", None) is not None]
        assert found, "no usage chunk"
        last = found[-1]
        return last.prompt_tokens, last.completion_tokens, last.total_tokens

    assert usage(hit_chunks) == usage(miss_chunks)
    assert usage(miss_chunks)[2] > 0


async def test_tool_calls_through_litellms_sdk(proxy: FastClient) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
    messages = [{"role": "user", "content": unique("Where is my order?")}]
    miss = await _warm(proxy, messages, tools=[tool])
    calls = [
        (c.function.name, json.loads(c.function.arguments)) for c in miss.choices[0].message.tool_calls or []
    ]
    assert calls and calls[0][0] == "lookup_order"
    hit = await _chat(proxy, messages, tools=[tool])
    assert _header(hit, "x-cache") == "HIT"
    assert [
        (c.function.name, json.loads(c.function.arguments)) for c in hit.choices[0].message.tool_calls
    ] == calls
    assert hit.choices[0].finish_reason == "tool_calls"


async def test_request_controls_through_extra_body(proxy: FastClient) -> None:
    """LiteLLM's SDK forwards ``extra_body`` to the proxy as it is: the proxy's ``cache`` controls."""
    messages = [{"role": "user", "content": unique("Controls through LiteLLM's SDK.")}]
    miss = await _warm(proxy, messages)
    upstream = proxy.upstream_calls()
    bypass = await _chat(proxy, messages, extra_body={"cache": {"no-cache": True}})
    assert _header(bypass, "x-cache") == "BYPASS"
    assert proxy.upstream_calls() == upstream + 1
    served = await _chat(proxy, messages, extra_body={"cache": {"no-store": True}})
    assert _header(served, "x-cache") == "HIT"
    assert served.choices[0].message.content == miss.choices[0].message.content


async def test_embeddings_and_text_completions_through_litellms_sdk(proxy: FastClient) -> None:
    import litellm

    inputs = [unique("sdk vector one"), unique("sdk vector two")]
    stores = proxy.counter("embedding", "nomic-embed-text", "store")
    first = await litellm.aembedding(**_call(proxy, model="litellm_proxy/nomic-embed-text", input=inputs))
    assert _header(first, "x-cache") == "MISS"
    _wait_more(lambda: proxy.counter("embedding", "nomic-embed-text", "store"), stores)
    embeds = proxy.upstream_calls("embed")
    again = await litellm.aembedding(**_call(proxy, model="litellm_proxy/nomic-embed-text", input=inputs))
    assert _header(again, "x-cache") == "HIT"
    assert [d["embedding"] for d in again.data] == [d["embedding"] for d in first.data]
    assert proxy.upstream_calls("embed") == embeds

    prompt = unique("Complete this through LiteLLM's SDK:")
    text_stores = proxy.counter("exact", "llama3.2-text", "store")
    miss = await litellm.atext_completion(
        **_call(proxy, model="litellm_proxy/llama3.2-text", prompt=prompt, temperature=0)
    )
    assert _header(miss, "x-cache") == "MISS"
    _wait_more(lambda: proxy.counter("exact", "llama3.2-text", "store"), text_stores)
    hit = await litellm.atext_completion(
        **_call(proxy, model="litellm_proxy/llama3.2-text", prompt=prompt, temperature=0)
    )
    assert _header(hit, "x-cache") == "HIT"
    assert hit.choices[0].text == miss.choices[0].text and miss.choices[0].text
