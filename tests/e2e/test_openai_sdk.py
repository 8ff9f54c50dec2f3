"""The cache as the OpenAI Python SDK sees it, through real proxies (fast path on, on with the opt-in
auth and setup reuse, and off).

Written against defects users met with a client nobody here wrote: text completions replayed empty or
in the chat shape whenever a stream was involved, embeddings keyed on ``encoding_format`` (the SDK
sends base64 by default), and ``no-store`` treated as "bypass" instead of LiteLLM's "may serve, do
not store".

Covered: ``/v1/completions`` in all four miss/hit stream orders; embeddings with the SDK's default
base64 and with float (one entry, identical decoded vectors, batch order); ``extra_body={"cache":
...}`` and ``Cache-Control`` controls with a fresh entry and on a miss (chat, streams, embeddings);
``with_raw_response`` reading ``x-cache``/``x-cache-layer``/``Age`` and the body marker on chat;
``stream_options.include_usage`` (one usage chunk, the same token counts on hit and miss, from a
streamed or a plain miss); tool calls (the same calls and ``finish_reason`` on a hit, streamed too;
tools are part of the key); ``response_format: json_object`` (a JSON answer, served as the same
document; part of the key); the async client (misses, concurrent hits, a streamed hit, embeddings,
a text completion). LiteLLM's SDK as a client: ``test_litellm_sdk_client.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import openai
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import OK, FastClient, unique
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


TEXT_MODEL = "llama3.2-text"
EMBED_MODEL = "nomic-embed-text"


# "reuse": the fast path with fast_path.auth_reuse_seconds (reused verdicts and request setups) and no
# logging integration (its hits are not logged).
@pytest.fixture(params=["memory", "reuse", "off"], ids=["fast_path", "fast_path_reused", "hook_path"])
def path(
    request: pytest.FixtureRequest, fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> Iterator[tuple[FastClient, openai.OpenAI]]:
    proxy = fp_proxies[request.param]
    client = FastClient(proxy, simulator)
    sdk = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=OK, max_retries=0, timeout=60)
    yield client, sdk
    sdk.close()
    client.close()


def _stored(client: FastClient, model: str, layer: str = "exact") -> Callable[[], int]:
    return lambda: client.counter(layer, model, "store")


def _wait_more(probe: Callable[[], int], before: int) -> None:
    deadline = time.monotonic() + 8
    while probe() <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert probe() > before, "the answer was not stored in time"


def _completion(sdk: openai.OpenAI, prompt: str, *, stream: bool, **extra: Any) -> tuple[str, str, str]:
    """(x-cache, text, object) of one ``/v1/completions`` call as the SDK returns it."""
    if stream:
        raw = sdk.completions.with_raw_response.create(
            model=TEXT_MODEL, prompt=prompt, temperature=0, stream=True,
            stream_options={"include_usage": True}, **extra,
        )  # fmt: skip
        chunks = list(raw.parse())
        text = "".join(choice.text or "" for chunk in chunks for choice in chunk.choices)
        objects = {chunk.object for chunk in chunks}
        assert objects == {"text_completion"}, objects
        assert any(choice.finish_reason == "stop" for chunk in chunks for choice in chunk.choices)
        return raw.headers["x-cache"], text, "text_completion"
    raw = sdk.completions.with_raw_response.create(model=TEXT_MODEL, prompt=prompt, temperature=0, **extra)
    parsed = raw.parse()
    assert isinstance(parsed.choices[0].text, str), parsed
    return raw.headers["x-cache"], parsed.choices[0].text, parsed.object


@pytest.mark.parametrize(
    ("miss_stream", "hit_stream"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["plain-plain", "plain-stream", "stream-plain", "stream-stream"],
)
def test_text_completion_replays_the_same_text_in_every_stream_order(
    path: tuple[FastClient, openai.OpenAI], miss_stream: bool, hit_stream: bool
) -> None:
    client, sdk = path
    prompt = unique("Write one sentence about lighthouses.")
    upstream, stores = client.upstream_calls("generate"), client.counter("exact", TEXT_MODEL, "store")
    miss = _completion(sdk, prompt, stream=miss_stream)
    assert miss[0] == "MISS"
    assert miss[1].strip(), "the miss itself must carry text"
    _wait_more(_stored(client, TEXT_MODEL), stores)
    hit = _completion(sdk, prompt, stream=hit_stream)
    assert hit == ("HIT", miss[1], "text_completion")
    assert client.upstream_calls("generate") == upstream + 1


def _vectors(sdk: openai.OpenAI, inputs: list[str], **extra: Any) -> tuple[str, list[list[float]]]:
    raw = sdk.embeddings.with_raw_response.create(model=EMBED_MODEL, input=inputs, **extra)
    return raw.headers["x-cache"], [item.embedding for item in raw.parse().data]


def test_embeddings_float_and_base64_share_one_entry(
    fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> None:
    for name in ("memory", "off"):
        client = FastClient(fp_proxies[name], simulator)
        sdk = openai.OpenAI(base_url=f"{fp_proxies[name].url}/v1", api_key=OK, max_retries=0)
        try:
            inputs = [unique("vector one"), unique("vector two")]
            embeds = client.upstream_calls("embed")
            stores = client.counter("embedding", EMBED_MODEL, "store")
            status, first = _vectors(sdk, inputs)  # the SDK's default: encoding_format=base64
            assert status == "MISS"
            _wait_more(_stored(client, EMBED_MODEL, "embedding"), stores)
            fast_before = client.counter("fast_path", EMBED_MODEL, "hit")
            for extra in ({}, {"encoding_format": "float"}, {"encoding_format": "base64"}):
                status, again = _vectors(sdk, inputs, **extra)
                assert status == "HIT", (name, extra)
                assert again == first, (name, extra)  # identical vectors, in order
            assert client.upstream_calls("embed") == embeds + 1, name
            reversed_status, reversed_vectors = _vectors(sdk, inputs[::-1])
            assert reversed_status == "HIT" and reversed_vectors == first[::-1]
            fast_hits = client.counter("fast_path", EMBED_MODEL, "hit") - fast_before
            assert fast_hits == (4 if name == "memory" else 0), name  # base64 hits take the fast path
            assert np.asarray(first).shape[0] == 2
        finally:
            sdk.close()
            client.close()


CONTROLS: list[tuple[str, dict[str, Any]]] = [
    ("none", {}),
    ("no-store body", {"extra_body": {"cache": {"no-store": True}}}),
    ("no-store header", {"extra_headers": {"Cache-Control": "no-store"}}),
    ("no-cache body", {"extra_body": {"cache": {"no-cache": True}}}),
    ("no-cache header", {"extra_headers": {"Cache-Control": "no-cache"}}),
    ("both body", {"extra_body": {"cache": {"no-cache": True, "no-store": True}}}),
    ("both header", {"extra_headers": {"Cache-Control": "no-store, no-cache"}}),
]


def _chat(sdk: openai.OpenAI, prompt: str, *, stream: bool = False, **extra: Any) -> tuple[str, str]:
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        raw = sdk.chat.completions.with_raw_response.create(
            model="llama3.2", messages=messages, temperature=0, stream=True, **extra
        )
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return raw.headers["x-cache"], text
    raw = sdk.chat.completions.with_raw_response.create(
        model="llama3.2", messages=messages, temperature=0, **extra
    )
    return raw.headers["x-cache"], str(raw.parse().choices[0].message.content)


@pytest.mark.parametrize(("label", "extra"), CONTROLS, ids=[label for label, _ in CONTROLS])
def test_request_controls_have_litellms_meanings_with_a_fresh_entry(
    path: tuple[FastClient, openai.OpenAI], label: str, extra: dict[str, Any]
) -> None:
    """no-store: served from the cache, stores nothing; no-cache: upstream, stored; both: bypass."""
    client, sdk = path
    prompt = unique("Controls with a fresh entry.")
    stores = client.counter("exact", "llama3.2", "store")
    _, warmed = _chat(sdk, prompt)
    _wait_more(_stored(client, "llama3.2"), stores)
    upstream, stores = client.upstream_calls(), client.counter("exact", "llama3.2", "store")
    status, text = _chat(sdk, prompt, **extra)
    reads, writes = (
        "no-cache" not in label and "both" not in label,
        "no-store" not in label and "both" not in label,
    )
    if reads:
        assert status == "HIT" and text == warmed
        assert client.upstream_calls() == upstream
        stream_status, streamed = _chat(sdk, prompt, stream=True, **extra)  # stream replay too
        assert (stream_status, streamed) == ("HIT", warmed)
    else:
        assert status == "BYPASS"
        assert client.upstream_calls() == upstream + 1
    if writes and not reads:
        _wait_more(_stored(client, "llama3.2"), stores)  # no-cache refreshes the entry
    time.sleep(0.3)  # a write would be in a background task: give one the time to be counted
    assert client.counter("exact", "llama3.2", "store") == stores + (1 if writes and not reads else 0)


@pytest.mark.parametrize("header", [False, True], ids=["body", "header"])
def test_no_store_miss_goes_upstream_and_stores_nothing(
    path: tuple[FastClient, openai.OpenAI], header: bool
) -> None:
    client, sdk = path
    prompt = unique("Never keep this one.")
    extra: dict[str, Any] = (
        {"extra_headers": {"Cache-Control": "no-store"}}
        if header
        else {"extra_body": {"cache": {"no-store": True}}}
    )
    upstream, stores = client.upstream_calls(), client.counter("exact", "llama3.2", "store")
    assert _chat(sdk, prompt, **extra)[0] == "MISS"
    time.sleep(0.3)
    assert client.counter("exact", "llama3.2", "store") == stores
    assert _chat(sdk, prompt)[0] == "MISS"  # nothing was kept
    assert client.upstream_calls() == upstream + 2


def test_no_store_embeddings_are_served_and_not_stored(path: tuple[FastClient, openai.OpenAI]) -> None:
    client, sdk = path
    cached, fresh = unique("embedding kept"), unique("embedding never kept")
    stores = client.counter("embedding", EMBED_MODEL, "store")
    _, warmed = _vectors(sdk, [cached])
    _wait_more(_stored(client, EMBED_MODEL, "embedding"), stores)
    embeds, stores = client.upstream_calls("embed"), client.counter("embedding", EMBED_MODEL, "store")
    no_store: dict[str, Any] = {"extra_body": {"cache": {"no-store": True}}}
    assert _vectors(sdk, [cached], **no_store) == ("HIT", warmed)
    assert client.upstream_calls("embed") == embeds
    assert _vectors(sdk, [fresh], **no_store)[0] == "MISS"
    time.sleep(0.3)
    assert client.counter("embedding", EMBED_MODEL, "store") == stores
    assert _vectors(sdk, [fresh])[0] == "MISS"


# --- chat through the SDK: headers, usage in streams, tools, JSON mode, the async client ------------


def _warm_chat(client: FastClient, sdk: openai.OpenAI, **params: Any) -> Any:
    """A non-streamed chat miss, waited for until its entry is stored; returns the parsed miss."""
    stores = client.counter("exact", "llama3.2", "store")
    raw = sdk.chat.completions.with_raw_response.create(model="llama3.2", temperature=0, **params)
    assert raw.headers["x-cache"] == "MISS"
    _wait_more(_stored(client, "llama3.2"), stores)
    return raw.parse()


def test_with_raw_response_reads_the_cache_headers_of_a_chat_hit(
    path: tuple[FastClient, openai.OpenAI],
) -> None:
    client, sdk = path
    messages: Any = [{"role": "user", "content": unique("Headers through the SDK.")}]
    miss = _warm_chat(client, sdk, messages=messages)
    raw = sdk.chat.completions.with_raw_response.create(model="llama3.2", messages=messages, temperature=0)
    assert raw.headers["x-cache"] == "HIT"
    assert raw.headers["x-cache-layer"] == "exact"
    assert int(raw.headers["age"]) >= 0
    hit = raw.parse()
    assert hit.choices[0].message.content == miss.choices[0].message.content
    assert hit.model_extra is not None and hit.model_extra.get("cached") is True  # the body marker


def test_sdk_hits_with_a_reused_verdict_and_setup_read_the_same(
    fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> None:
    # The OpenAI SDK repeats its headers exactly, so its repeated requests reuse the route's setup
    # too: each such hit must still be a complete answer, streamed or not, with its own call id.
    client = FastClient(fp_proxies["reuse"], simulator)
    sdk = openai.OpenAI(base_url=f"{fp_proxies['reuse'].url}/v1", api_key=OK, max_retries=0, timeout=60)
    try:
        messages: Any = [{"role": "user", "content": unique("Reused setups through the SDK.")}]
        miss = _warm_chat(client, sdk, messages=messages)
        setups = client.counter("fast_path", "llama3.2", "setup_reused")
        call_ids = set()
        # Within the window: at worst the first hit runs LiteLLM's auth and the second the setup,
        # which the third and fourth then reuse.
        for _ in range(4):
            raw = sdk.chat.completions.with_raw_response.create(
                model="llama3.2", messages=messages, temperature=0
            )
            assert raw.headers["x-cache"] == "HIT"
            assert raw.parse().choices[0].message.content == miss.choices[0].message.content
            call_ids.add(raw.headers["x-litellm-call-id"])
        status, text = _chat(sdk, messages[0]["content"], stream=True)
        assert (status, text) == ("HIT", miss.choices[0].message.content)
        assert len(call_ids) == 4
        assert client.counter("fast_path", "llama3.2", "setup_reused") >= setups + 2
    finally:
        sdk.close()
        client.close()


def _streamed_usage(sdk: openai.OpenAI, messages: Any) -> tuple[str, str, dict[str, Any]]:
    raw = sdk.chat.completions.with_raw_response.create(
        model="llama3.2",
        messages=messages,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    # Exactly one chunk carries usage, the last one. (OpenAI sends it with no choices; LiteLLM's own
    # misses send one empty delta with it, which the SDK reads the same way.)
    assert len(usage) == 1 and chunks[-1].usage is not None, usage
    return raw.headers["x-cache"], text, usage[0].model_dump(exclude_none=True)


def _counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


@pytest.mark.parametrize("miss_stream", [True, False], ids=["stream-stream", "plain-stream"])
def test_streamed_usage_is_identical_on_hit_and_miss(
    path: tuple[FastClient, openai.OpenAI], miss_stream: bool
) -> None:
    client, sdk = path
    messages: Any = [{"role": "user", "content": unique("Usage in a stream.")}]
    if miss_stream:
        stores = client.counter("exact", "llama3.2", "store")
        status, miss_text, miss_usage = _streamed_usage(sdk, messages)
        assert status == "MISS"
        _wait_more(_stored(client, "llama3.2"), stores)
    else:
        plain = _warm_chat(client, sdk, messages=messages)
        miss_text, miss_usage = plain.choices[0].message.content, plain.usage.model_dump(exclude_none=True)
    upstream = client.upstream_calls()
    status, hit_text, hit_usage = _streamed_usage(sdk, messages)
    assert (status, hit_text) == ("HIT", miss_text)
    assert _counts(hit_usage) == _counts(miss_usage)
    assert miss_usage["total_tokens"] == miss_usage["prompt_tokens"] + miss_usage["completion_tokens"] > 0
    assert client.upstream_calls() == upstream


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def _tool_calls(message: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls or []]


def test_tool_calls_are_cached_and_replayed(path: tuple[FastClient, openai.OpenAI]) -> None:
    client, sdk = path
    messages: Any = [{"role": "user", "content": unique("What is the weather in Lisbon?")}]
    miss = _warm_chat(client, sdk, messages=messages, tools=[WEATHER_TOOL])
    calls = _tool_calls(miss.choices[0].message)
    assert calls and calls[0][0] == "get_weather" and set(calls[0][1]) == {"city", "days"}
    assert miss.choices[0].finish_reason == "tool_calls"
    upstream = client.upstream_calls()
    raw = sdk.chat.completions.with_raw_response.create(
        model="llama3.2", messages=messages, temperature=0, tools=[WEATHER_TOOL]
    )
    assert raw.headers["x-cache"] == "HIT"
    hit = raw.parse()
    assert _tool_calls(hit.choices[0].message) == calls
    assert hit.choices[0].finish_reason == "tool_calls"
    assert all(call.id and call.type == "function" for call in hit.choices[0].message.tool_calls or [])
    # The same request without the tool is another request (tools are part of the key).
    other = sdk.chat.completions.with_raw_response.create(model="llama3.2", messages=messages, temperature=0)
    assert other.headers["x-cache"] == "MISS" and not other.parse().choices[0].message.tool_calls
    # Streamed, the hit is the same call, assembled from the chunks the SDK yields.
    stream = sdk.chat.completions.with_raw_response.create(
        model="llama3.2", messages=messages, temperature=0, tools=[WEATHER_TOOL], stream=True
    )
    assert stream.headers["x-cache"] == "HIT"
    names, arguments = "", ""
    finish = None
    for chunk in stream.parse():
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                names += (delta.function.name or "") if delta.function else ""
                arguments += (delta.function.arguments or "") if delta.function else ""
            finish = choice.finish_reason or finish
    assert (names, json.loads(arguments)) == calls[0]
    assert finish == "tool_calls"
    assert client.upstream_calls() == upstream + 1  # only the request without tools went upstream


def test_json_mode_answers_are_cached_as_json(path: tuple[FastClient, openai.OpenAI]) -> None:
    client, sdk = path
    messages: Any = [{"role": "user", "content": unique("Reply in JSON: the capital of France.")}]
    json_mode: Any = {"type": "json_object"}
    miss = _warm_chat(client, sdk, messages=messages, response_format=json_mode)
    document = json.loads(str(miss.choices[0].message.content))
    assert isinstance(document, dict) and document
    raw = sdk.chat.completions.with_raw_response.create(
        model="llama3.2", messages=messages, temperature=0, response_format=json_mode
    )
    assert raw.headers["x-cache"] == "HIT"
    assert json.loads(str(raw.parse().choices[0].message.content)) == document
    # Without JSON mode it is another request: the output format is part of the key.
    plain = sdk.chat.completions.with_raw_response.create(model="llama3.2", messages=messages, temperature=0)
    assert plain.headers["x-cache"] == "MISS"


async def test_the_async_client_sees_misses_hits_and_streams(path: tuple[FastClient, openai.OpenAI]) -> None:
    client, _ = path
    prompt = unique("Asked by the async client.")
    messages: Any = [{"role": "user", "content": prompt}]
    async with openai.AsyncOpenAI(
        base_url=f"{client.proxy.url}/v1", api_key=OK, max_retries=0, timeout=60
    ) as sdk:
        stores = client.counter("exact", "llama3.2", "store")
        miss = await sdk.chat.completions.with_raw_response.create(
            model="llama3.2", messages=messages, temperature=0
        )
        assert miss.headers["x-cache"] == "MISS"
        _wait_more(_stored(client, "llama3.2"), stores)
        answer = miss.parse().choices[0].message.content
        upstream = client.upstream_calls()
        hits = await asyncio.gather(
            *(
                sdk.chat.completions.with_raw_response.create(
                    model="llama3.2", messages=messages, temperature=0
                )
                for _ in range(4)
            )
        )
        assert [h.headers["x-cache"] for h in hits] == ["HIT"] * 4
        assert {h.parse().choices[0].message.content for h in hits} == {answer}
        stream = await sdk.chat.completions.with_raw_response.create(
            model="llama3.2", messages=messages, temperature=0, stream=True
        )
        assert stream.headers["x-cache"] == "HIT"
        text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
        assert text == answer
        inputs = [unique("async vector")]
        embed_stores = client.counter("embedding", EMBED_MODEL, "store")
        first = await sdk.embeddings.with_raw_response.create(model=EMBED_MODEL, input=inputs)
        assert first.headers["x-cache"] == "MISS"
        _wait_more(_stored(client, EMBED_MODEL, "embedding"), embed_stores)
        again = await sdk.embeddings.with_raw_response.create(model=EMBED_MODEL, input=inputs)
        assert again.headers["x-cache"] == "HIT"
        assert [d.embedding for d in again.parse().data] == [d.embedding for d in first.parse().data]
        completion = await sdk.completions.create(model=TEXT_MODEL, prompt=prompt, temperature=0)
        assert completion.choices[0].text
        assert client.upstream_calls() == upstream  # chat hits only; the completion is another endpoint
