"""The fast hit path through real ``litellm`` proxy processes (see ``fast_path_support.py``)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import (
    BLOCKED,
    BOGUS,
    CACHE_CONTROLS,
    EXPIRED,
    OK,
    OK_2,
    OTHER_MODELS,
    OVER_BUDGET,
    RPM_1,
    STREAK,
    TEAM_B,
    FastClient,
    chat_body,
    fast_client,
    sse_events,
    unique,
)
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["memory", "redis"])
def fast(
    request: pytest.FixtureRequest, fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, request.param)


@pytest.fixture
def memory(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "memory")


@pytest.fixture
def strict(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "strict")


@pytest.fixture
def master(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "master")


@pytest.fixture
def off(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "off")


def _without_digits(text: str) -> str:
    return re.sub(r"\d", "", text)


def content_of(body: dict[str, object]) -> str:
    return str(body["choices"][0]["message"]["content"])  # type: ignore[index]


# --- serving -----------------------------------------------------------------------------------------


def test_hit_is_served_ahead_of_the_pipeline(fast: FastClient) -> None:
    body = chat_body(unique("What is the capital of Peru?"), temperature=0)
    first = fast.warm(OK, body)
    calls, served = fast.upstream_calls(), fast.fast_hits()

    hit = fast.chat(OK_2, body)  # another key of the same team shares the entry
    assert hit.status_code == 200, hit.text
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-layer"] == "exact"
    assert int(hit.headers["age"]) >= 0
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["x-litellm-model-group"] == "llama3.2"
    payload = hit.json()
    assert payload["cached"] is True
    assert payload["model"] == "llama3.2"  # what the client asked for, as the proxy answers
    assert content_of(payload) == content_of(first.json())
    assert fast.fast_hits() == served + 1
    assert fast.upstream_calls() == calls
    # the proxy's middleware still wraps the fast path
    assert hit.headers["x-content-type-options"] == "nosniff"


def test_fast_path_body_matches_the_hook_path(memory: FastClient, off: FastClient) -> None:
    body = chat_body(unique("Name a prime number."), temperature=0)
    memory.warm(OK, body)
    off.warm(OK, body)
    fast_body, hook_body = memory.chat(OK, body).json(), off.chat(OK, body).json()
    assert set(fast_body) == set(hook_body)
    assert content_of(fast_body) == content_of(hook_body)
    # (token counts may differ: the simulator reuses its prompt cache differently per proxy)
    assert set(fast_body["usage"]) == set(hook_body["usage"])
    assert set(fast_body["choices"][0]["message"]) <= set(hook_body["choices"][0]["message"])
    assert fast_body["choices"][0]["finish_reason"] == hook_body["choices"][0]["finish_reason"]


def test_miss_falls_through_unchanged(fast: FastClient) -> None:
    body = chat_body(unique("A question nobody asked before."), temperature=0, top_p=0.5)
    fast.warm(OK, chat_body(unique("teach the fast path this key"), temperature=0))
    calls, served = fast.upstream_calls(), fast.fast_hits()
    response = fast.chat(OK, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-cache"] == "MISS"
    assert "cached" not in response.json()
    assert fast.upstream_calls() == calls + 1
    assert fast.fast_hits() == served
    # the body the pipeline received was replayed intact: the answer is to this prompt
    assert body["messages"][0]["content"] in content_of(response.json())


def test_a_credential_on_a_hit_streak_authenticates_before_probing(memory: FastClient) -> None:
    # A known credential's miss is decided by the store probe without running auth (custom_auth is
    # asked once, by the pipeline). After PROBE_SKIP_AFTER (8) hits in a row, the fast path runs
    # LiteLLM's auth first instead: every hit still runs it once, a miss then runs it twice (fast
    # path, pipeline), and ends the streak, so the next miss is probed again.
    repeated = chat_body(unique("What is the boiling point of water?"), temperature=0)
    memory.warm(STREAK, repeated)
    probed = chat_body(unique("A first miss, decided by the probe."), temperature=0)
    calls = memory.auth_calls(STREAK)
    assert memory.chat(STREAK, probed).headers["x-cache"] == "MISS"
    assert memory.auth_calls(STREAK) == calls + 1
    for _ in range(8):
        calls = memory.auth_calls(STREAK)
        hit = memory.chat(STREAK, repeated)
        assert hit.headers["x-cache"] == "HIT" and hit.json()["cached"] is True
        assert memory.auth_calls(STREAK) == calls + 1  # LiteLLM's auth on every hit, streak or not
    calls = memory.auth_calls(STREAK)
    after_streak = memory.chat(STREAK, chat_body(unique("A miss after eight hits."), temperature=0))
    assert after_streak.headers["x-cache"] == "MISS"
    assert memory.auth_calls(STREAK) == calls + 2
    calls = memory.auth_calls(STREAK)
    again = memory.chat(STREAK, chat_body(unique("The next miss is probed again."), temperature=0))
    assert again.headers["x-cache"] == "MISS"
    assert memory.auth_calls(STREAK) == calls + 1


def test_ineligible_and_bypassed_requests_fall_through(memory: FastClient) -> None:
    body = chat_body(unique("Cached, then asked differently."), temperature=0)
    memory.warm(OK, body)
    served = memory.fast_hits()
    assert memory.chat(OK, body, headers={"Cache-Control": "no-cache"}).headers["x-cache"] == "BYPASS"
    assert memory.chat(OK, {**body, "cache": {"no-cache": True}}).headers["x-cache"] == "BYPASS"
    assert memory.chat(OK, {**body, "temperature": 0.9}).headers["x-cache"] == "BYPASS"
    malformed = memory.http.post(
        "/v1/chat/completions",
        content=b'{"model": "llama3.2", "messages": ',
        headers={"Authorization": f"Bearer {OK}", "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    unknown = memory.chat(OK, {**body, "model": "no-such-model"})
    assert unknown.status_code >= 400
    assert memory.fast_hits() == served


def test_fast_path_disabled_leaves_the_hook_path(off: FastClient) -> None:
    body = chat_body(unique("Disabled fast path."), temperature=0)
    off.warm(OK, body)
    hit = off.chat(OK, body)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.json()["cached"] is True
    assert off.fast_hits() == 0
    assert "fast_path" not in off.stats()


# --- authentication: the same verdict as the proxy's -------------------------------------------------


@pytest.mark.parametrize("key", [OK, BOGUS, None, EXPIRED, BLOCKED, OVER_BUDGET, OTHER_MODELS])
@pytest.mark.parametrize("name", ["memory", "strict"])
def test_auth_verdict_equals_the_proxys(
    key: str | None, name: str, fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> None:
    client = FastClient(fp_proxies[name], simulator)
    try:
        body = chat_body(unique("Equivalence question."), temperature=0)
        client.warm(OK, body)  # team-a's entry exists: every team-a key could be served it
        # The proxy's own verdict: a request the fast path cannot serve (not cacheable).
        reference = client.chat(key, {**body, "temperature": 0.7})
        served = client.fast_hits()
        response = client.chat(key, body)
        assert response.status_code == reference.status_code, (response.text, reference.text)
        if response.status_code != 200:
            got, want = response.json()["error"], reference.json()["error"]
            assert (got["type"], got["code"]) == (want["type"], want["code"])
            assert _without_digits(got["message"]) == _without_digits(want["message"])  # timestamps
            assert client.fast_hits() == served
        elif key == OTHER_MODELS:
            # LiteLLM's key model-access check refuses this model: never served here (the pipeline,
            # which does not enforce it for custom_auth by default, answers instead).
            assert client.fast_hits() == served
        else:
            assert client.fast_hits() == served + 1
    finally:
        client.close()


def test_expired_key_is_refused_when_the_proxy_checks_expiry(strict: FastClient) -> None:
    body = chat_body(unique("Expired key question."), temperature=0)
    strict.warm(OK, body)
    response = strict.chat(EXPIRED, body)
    assert response.status_code == 401
    assert "Expired Key" in response.json()["error"]["message"]


def test_master_key_without_custom_auth(master: FastClient) -> None:
    body = chat_body(unique("Master key question."), temperature=0)
    master.warm(master.proxy.master_key, body)
    served = master.fast_hits()
    hit = master.chat(master.proxy.master_key, body)
    assert hit.status_code == 200
    assert hit.headers["x-cache"] == "HIT"
    assert master.fast_hits() == served + 1
    for key in (BOGUS, "sk-" + "x" * 40):
        reference = master.chat(key, {**body, "temperature": 0.7})
        response = master.chat(key, body)
        assert response.status_code == reference.status_code
        assert response.status_code in (400, 401, 403)
    assert master.fast_hits() == served + 1


def test_litellm_lazy_features_still_load_beside_the_bypass(master: FastClient, off: FastClient) -> None:
    # The fast path's routes skip LiteLLM's lazy-feature middleware (integrations/lazy_features.py);
    # a lazily registered route still loads on its first request, as on a proxy without the fast path.
    answers = []
    for client in (master, off):
        headers = {"Authorization": f"Bearer {client.proxy.master_key}"}
        answers.append(client.http.get("/guardrails/list", headers=headers).status_code)
    assert answers[0] == answers[1]
    assert answers[0] != 404


def test_the_fast_path_routes_bypass_litellms_lazy_feature_middleware(
    master: FastClient, off: FastClient
) -> None:
    on_chain = master.http.get("/_fp_test/middleware").json()
    off_chain = off.http.get("/_fp_test/middleware").json()
    assert "FastPathApp" in on_chain
    assert "IdleLazyFeatureBypass" in on_chain
    assert "LazyFeatureMiddleware" not in on_chain  # walked past: the bypass links to what lies below it
    assert "LazyFeatureMiddleware" in off_chain
    assert "IdleLazyFeatureBypass" not in off_chain


def test_cache_control_permissions_are_enforced(memory: FastClient, off: FastClient) -> None:
    body = chat_body(unique("Who may set cache controls?"), temperature=0)
    memory.warm(OK, body)
    served = memory.fast_hits()
    for client in (memory, off):
        refused = client.chat(CACHE_CONTROLS, {**body, "cache": {"ttl": 60}})
        assert refused.status_code == 403, refused.text
    assert memory.fast_hits() == served


# --- tenants -----------------------------------------------------------------------------------------


def test_other_team_is_never_served_even_with_forged_fields(fast: FastClient) -> None:
    body = chat_body(unique("Team A's private plan."), temperature=0)
    fast.warm(OK, body)
    fast.warm(TEAM_B, chat_body(unique("team b's own question"), temperature=0))  # b has a hint too
    calls, served = fast.upstream_calls(), fast.fast_hits()
    forged = {
        **body,
        "cache_key": "anything",
        "user": "alice",
        "metadata": {
            "lcp_identity": '["x","team-a",null,null]|0000',
            "user_api_key_team_id": "team-a",
            "user_api_key_hash": "forged",
            "model_group": "llama3.2",
        },
    }
    response = fast.chat(TEAM_B, forged, headers={"x-team-id": "team-a", "x-litellm-tags": "team-a"})
    assert response.status_code == 200, response.text
    assert response.headers["x-cache"] == "MISS"
    assert "cached" not in response.json()
    assert fast.upstream_calls() == calls + 1
    assert fast.fast_hits() == served


# --- streaming and embeddings -----------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
def test_streamed_hit_is_replayed_as_sse(fast: FastClient, include_usage: bool) -> None:
    body = chat_body(unique("Explain TCP congestion control."), temperature=0)
    first = fast.warm(OK, body)
    calls, served = fast.upstream_calls(), fast.fast_hits()
    request = {**body, "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    with fast.http.stream(
        "POST", "/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {OK}"}
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["x-cache"] == "HIT"
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        events = sse_events(stream)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["model"] == "llama3.2" for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == content_of(first.json())
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "stop" in [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert bool(usage) is include_usage
    if include_usage:
        assert usage[0] == first.json()["usage"]
    assert "cached" not in events[0]
    assert fast.fast_hits() == served + 1
    assert fast.upstream_calls() == calls


def test_embeddings_are_served_only_when_every_item_is_cached(fast: FastClient) -> None:
    a, b, c = unique("alpha"), unique("beta"), unique("gamma")
    first = fast.embed(OK, [a, b])
    assert first.status_code == 200, first.text
    assert fast.wait_for(lambda: fast.embed(OK, [a, b]).headers.get("x-cache") == "HIT")
    served, inputs = fast.fast_hits("nomic-embed-text"), fast.upstream_calls("embed_inputs")

    hit = fast.embed(OK, [a, b])
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-layer"] == "embedding"
    assert hit.headers["x-cache-items"] == "2/2"
    assert fast.fast_hits("nomic-embed-text") == served + 1
    got = [item["embedding"] for item in hit.json()["data"]]
    want = [item["embedding"] for item in sorted(first.json()["data"], key=lambda d: d["index"])]
    assert got == want
    assert [item["index"] for item in hit.json()["data"]] == [0, 1]
    assert hit.json()["model"] == "nomic-embed-text"
    assert hit.json()["usage"]["prompt_tokens"] == first.json()["usage"]["prompt_tokens"]
    assert fast.upstream_calls("embed_inputs") == inputs

    partial = fast.embed(OK, [b, c])  # one item missing: the pipeline sends only that one upstream
    assert partial.status_code == 200
    assert partial.headers.get("x-cache-items") == "1/2"
    assert fast.fast_hits("nomic-embed-text") == served + 1
    assert fast.upstream_calls("embed_inputs") == inputs + 1


# --- accounting --------------------------------------------------------------------------------------


def test_hit_is_logged_as_a_cache_hit_with_zero_cost(memory: FastClient) -> None:
    body = chat_body(unique("Log this hit."), temperature=0)
    memory.warm(OK, body)
    served = memory.fast_hits()
    hit = memory.chat(OK, body)
    assert memory.fast_hits() == served + 1
    call_id = hit.headers["x-litellm-call-id"]

    def logged() -> list[dict[str, object]]:
        return [r for r in memory.success_records() if r["call_id"] == call_id]

    assert memory.wait_for(lambda: bool(logged())), "the hit never reached the success callbacks"
    (record,) = logged()
    assert record["cache_hit"] is True
    assert record["response_cost"] == 0
    assert record["call_type"] == "acompletion"
    assert record["team_id"] == "team-a"
    assert record["model_group"] == "llama3.2"


def test_hits_do_not_consume_rate_limits_by_default(memory: FastClient) -> None:
    body = chat_body(unique("Rate limited key, cached answer."), temperature=0)
    memory.warm(OK, body)  # same team as RPM_1: the entry is shared
    served = memory.fast_hits()
    for _ in range(4):
        hit = memory.chat(RPM_1, body)
        assert hit.status_code == 200, hit.text
        assert hit.headers["x-cache"] == "HIT"
    assert memory.fast_hits() == served + 4
    # the key's single request per minute is still unused: the first miss passes, the next is refused
    assert memory.chat(RPM_1, chat_body(unique("miss one"), temperature=0)).status_code == 200
    assert memory.chat(RPM_1, chat_body(unique("miss two"), temperature=0)).status_code == 429


def test_hits_consume_rate_limits_when_configured(strict: FastClient) -> None:
    body = chat_body(unique("Rate limited key, strict proxy."), temperature=0)
    strict.warm(OK, body)
    served = strict.fast_hits()
    first = strict.chat(RPM_1, body)
    assert first.status_code == 200
    assert strict.fast_hits() == served + 1
    time.sleep(0.2)
    second = strict.chat(RPM_1, body)
    assert second.status_code == 429  # the limiter refused the hit; the proxy answered its 429
    assert strict.fast_hits() == served + 1
