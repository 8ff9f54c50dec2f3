"""``fast_path.auth_reuse_seconds`` through a real proxy (the "reuse" proxy of ``fp_proxies``): within
the window a hit reuses LiteLLM's verdict instead of running custom_auth again; a refusal is never
reused; a revoked key keeps its cached answers only until the window ends, and its misses are refused
at once (they always run LiteLLM's auth); the key's model access is checked on every hit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import (
    BOGUS,
    EXPIRED,
    OK,
    OTHER_MODELS,
    REUSE,
    REUSE_2,
    REUSE_WINDOW_S,
    FastClient,
    chat_body,
    fast_client,
    identical_hits,
    unique,
)
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def reuse(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "reuse")


def test_hits_within_the_window_do_not_run_custom_auth_again(reuse: FastClient) -> None:
    body = chat_body(unique("What is a cache line?"), temperature=0)
    reuse.warm(REUSE, body)
    time.sleep(REUSE_WINDOW_S)  # a verdict of its own for this test
    first = reuse.chat(REUSE, body)
    assert first.status_code == 200 and first.headers["x-cache"] == "HIT"
    calls, served, reused = (
        reuse.auth_calls(REUSE),
        reuse.fast_hits(),
        reuse.counter("fast_path", "llama3.2", "auth_reused"),
    )
    for _ in range(5):
        hit = reuse.chat(REUSE, body)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        assert hit.json()["id"] == first.json()["id"]
    # Five hits served ahead of the pipeline with the remembered verdict: custom_auth was not asked.
    assert reuse.fast_hits() == served + 5
    assert reuse.auth_calls(REUSE) == calls
    assert reuse.counter("fast_path", "llama3.2", "auth_reused") == reused + 5


def test_a_revoked_key_keeps_its_hits_only_until_the_window_ends(reuse: FastClient) -> None:
    body = chat_body(unique("What is a write-back cache?"), temperature=0)
    reuse.warm(REUSE_2, body)
    assert reuse.chat(REUSE_2, body).headers["x-cache"] == "HIT"  # a fresh verdict
    reuse.revoke(REUSE_2)
    # A miss runs LiteLLM's auth: refused at once.
    assert reuse.chat(REUSE_2, chat_body(unique("What is a TLB?"), temperature=0)).status_code == 401
    # After the window no hit is served either: every request is LiteLLM's auth's to refuse.
    time.sleep(REUSE_WINDOW_S + 0.2)
    refused = reuse.chat(REUSE_2, body)
    assert refused.status_code == 401, refused.text
    assert reuse.chat(REUSE_2, body).status_code == 401


@pytest.mark.parametrize("key", [BOGUS, None])
def test_a_refusal_is_never_reused(reuse: FastClient, key: str | None) -> None:
    body = chat_body(unique("What is a cache miss?"), temperature=0)
    reuse.warm(REUSE, body)
    for _ in range(3):
        assert reuse.chat(key, body).status_code == 401


def test_an_expired_key_is_never_reused(reuse: FastClient) -> None:
    # LiteLLM's custom_auth path accepts an expired key unless post-custom-auth checks are on; the
    # verdict is then taken again on every request, never reused.
    body = chat_body(unique("What is a victim cache?"), temperature=0)
    reuse.warm(EXPIRED, body)
    reused = reuse.counter("fast_path", "llama3.2", "auth_reused")
    for _ in range(3):
        assert reuse.chat(EXPIRED, body).headers.get("x-cache") == "HIT"
    assert reuse.counter("fast_path", "llama3.2", "auth_reused") == reused


def test_model_access_is_checked_on_every_reused_hit(reuse: FastClient) -> None:
    # A team-a key limited to the embedding model, asking for a chat entry team-a has: its verdict is
    # reused after the first request, and LiteLLM's model-access check still keeps every one of them
    # off the fast path (the pipeline answers them as LiteLLM decides).
    body = chat_body(unique("What is a cache set?"), temperature=0)
    reuse.warm(OK, body)
    reuse.chat(OTHER_MODELS, body)  # its verdict, remembered
    served, reused = reuse.fast_hits(), reuse.counter("fast_path", "llama3.2", "auth_reused")
    for _ in range(3):
        reuse.chat(OTHER_MODELS, body)
    assert reuse.counter("fast_path", "llama3.2", "auth_reused") >= reused + 2
    assert reuse.fast_hits() == served


def test_identical_hits_reuse_the_request_setup_too(reuse: FastClient) -> None:
    body = chat_body(unique("What is a cache tag?"), temperature=0)
    reuse.warm(REUSE, body)
    time.sleep(REUSE_WINDOW_S)  # a verdict of its own for this test
    first = reuse.chat(REUSE, body)  # LiteLLM's auth runs; its verdict is remembered
    setups, reused = reuse.setups_reused(), reuse.counter("fast_path", "llama3.2", "auth_reused")
    call_ids = identical_hits(reuse, REUSE, body, first, 5)
    # The first reused hit runs the route's setup with the remembered verdict; the next four reuse it,
    # each with a call id of its own.
    assert reuse.counter("fast_path", "llama3.2", "auth_reused") == reused + 5
    assert reuse.setups_reused() == setups + 4
    assert len(call_ids) == 5


def test_a_request_that_differs_runs_its_own_setup(reuse: FastClient) -> None:
    body = chat_body(unique("What is a cache way?"), temperature=0)
    other = chat_body(unique("What is a cache bank?"), temperature=0)
    reuse.warm(REUSE, body)
    reuse.warm(REUSE, other)
    time.sleep(REUSE_WINDOW_S)
    reuse.chat(REUSE, body)  # auth
    reuse.chat(REUSE, body)  # setup with the reused verdict, remembered
    assert reuse.chat(REUSE, body).headers["x-cache"] == "HIT"
    setups = reuse.setups_reused()
    # Same verdict (trace headers are not part of its key), but another body, another trace header or
    # another client address: setup runs for each (then is remembered for it).
    assert reuse.chat(REUSE, other).headers["x-cache"] == "HIT"
    traced = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert reuse.chat(REUSE, body, headers=traced).headers["x-cache"] == "HIT"
    elsewhere = httpx.Client(
        base_url=reuse.proxy.url, timeout=60, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    try:
        response = elsewhere.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {REUSE}"}
        )
        assert response.status_code == 200 and response.headers["x-cache"] == "HIT"
    finally:
        elsewhere.close()
    assert reuse.setups_reused() == setups
    assert reuse.chat(REUSE, body).headers["x-cache"] == "HIT"  # the original again: reused
    assert reuse.setups_reused() == setups + 1
