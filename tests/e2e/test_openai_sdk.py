"""The cache as the OpenAI Python SDK sees it, through real proxies (fast path on and off).

Written against defects users met with a client nobody here wrote: text completions replayed empty or
in the chat shape whenever a stream was involved, embeddings keyed on ``encoding_format`` (the SDK
sends base64 by default), and ``no-store`` treated as "bypass" instead of LiteLLM's "may serve, do
not store".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import openai
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import OK, FastClient, fp_proxies, unique
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e

__all__ = ["fp_proxies"]  # the session fixture, re-exported so pytest finds it here

TEXT_MODEL = "llama3.2-text"
EMBED_MODEL = "nomic-embed-text"


@pytest.fixture(params=["memory", "off"], ids=["fast_path", "hook_path"])
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
