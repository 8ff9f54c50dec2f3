"""The exact and embedding layers through a real ``litellm`` proxy process, on memory and on Redis."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import TEAM_A, TEAM_A_2, TEAM_B, Client, chat_body, unique

pytestmark = pytest.mark.e2e


def content_of(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def test_repeated_request_is_served_without_upstream_call(client: Client) -> None:
    body = chat_body(unique("What is the capital of France?"), temperature=0)
    before_calls, before_stores = client.upstream_calls(), client.stores()
    first = client.chat(TEAM_A, body)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "MISS"
    assert "cached" not in first.json()
    client.wait_stored(before_stores)

    second = client.chat(TEAM_A, body)
    assert second.status_code == 200
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-layer"] == "exact"
    assert int(second.headers["age"]) >= 0
    assert second.json()["cached"] is True
    assert content_of(second) == content_of(first)
    assert client.upstream_calls() == before_calls + 1


def test_reordered_json_and_whitespace_variants_hit(client: Client) -> None:
    prompt = unique("Name three primary colours.")
    before_stores = client.stores()
    first = client.chat(TEAM_A, chat_body(prompt, temperature=0, top_p=0.5))
    assert first.headers["x-cache"] == "MISS"
    client.wait_stored(before_stores)
    calls = client.upstream_calls()

    reordered = (
        '{"top_p": 0.50, "temperature": 0.0,\n  "messages": [{"content": "  '
        + prompt.replace("three", "three  ")
        + ' \\n", "role": "user"}], "model": "llama3.2"}'
    ).encode()
    variant = client.chat(TEAM_A, reordered)
    assert variant.status_code == 200, variant.text
    assert variant.headers["x-cache"] == "HIT"
    assert content_of(variant) == content_of(first)

    # a single text part is the same as a plain string, and the user field is never in the key
    parts = {
        "model": "llama3.2",
        "temperature": 0,
        "top_p": 0.5,
        "user": "someone-else",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    }
    assert client.chat(TEAM_A, parts).headers["x-cache"] == "HIT"
    assert client.upstream_calls() == calls


def test_non_deterministic_requests_are_never_cached(client: Client) -> None:
    body = chat_body(unique("Write a haiku about caches."), temperature=0.7)
    calls = client.upstream_calls()
    answers = set()
    for _ in range(3):
        response = client.chat(TEAM_A, body)
        assert response.status_code == 200
        assert response.headers["x-cache"] == "BYPASS"
        answers.add(content_of(response))
    assert client.upstream_calls() == calls + 3
    # no temperature at all: judged by Ollama's default (0.8), so not deterministic either
    assert client.chat(TEAM_A, chat_body(unique("Another haiku."))).headers["x-cache"] == "BYPASS"


def test_other_team_never_gets_the_entry_even_with_forged_fields(client: Client) -> None:
    body = chat_body(unique("Summarise our private roadmap."), temperature=0)
    before_stores = client.stores()
    a = client.chat(TEAM_A, body)
    assert a.headers["x-cache"] == "MISS"
    client.wait_stored(before_stores)
    assert client.chat(TEAM_A_2, body).headers["x-cache"] == "HIT"  # same team, other key: shared

    leaked_key = a.headers.get("x-litellm-cache-key") or client.chat(TEAM_A, body).headers.get(
        "x-litellm-cache-key"
    )
    forged = {
        **body,
        "cache_key": leaked_key or "forged",
        "metadata": {
            "lcp_identity": '["x","team-a",null,null]|0000',
            "user_api_key_team_id": "team-a",
            "user_api_key_hash": "whatever",
            "model_group": "llama3.2",
        },
        "user": "alice",
    }
    calls = client.upstream_calls()
    b = client.chat(TEAM_B, forged, headers={"x-litellm-cache-key": str(leaked_key), "x-team-id": "team-a"})
    assert b.status_code == 200, b.text
    assert b.headers["x-cache"] == "MISS"
    assert "cached" not in b.json()
    assert client.upstream_calls() == calls + 1


def test_streamed_request_replays_a_cached_answer(client: Client) -> None:
    body = chat_body(unique("Explain TCP slow start."), temperature=0)
    before_stores = client.stores()
    first = client.chat(TEAM_A, body)
    client.wait_stored(before_stores)
    calls = client.upstream_calls()

    with client.http.stream(
        "POST",
        "/v1/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {TEAM_A}"},
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["x-cache"] == "HIT"
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    finish = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
    assert text == content_of(first)
    assert "stop" in finish
    assert any(c.get("usage") for c in chunks)
    assert client.upstream_calls() == calls


def test_streamed_miss_is_stored_and_served_to_a_non_streamed_request(client: Client) -> None:
    body = chat_body(unique("List the OSI layers."), temperature=0)
    before_stores = client.stores()
    with client.http.stream(
        "POST",
        "/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {TEAM_A}"},
    ) as stream:
        assert stream.headers["x-cache"] == "MISS"
        events = [line[6:] for line in stream.iter_lines() if line.startswith("data: ")]
    streamed = "".join(
        (json.loads(e)["choices"][0]["delta"].get("content") or "")
        for e in events[:-1]
        if json.loads(e).get("choices")
    )
    client.wait_stored(before_stores)
    calls = client.upstream_calls()
    hit = client.chat(TEAM_A, body)
    assert hit.headers["x-cache"] == "HIT"
    assert content_of(hit) == streamed
    assert client.upstream_calls() == calls


def test_cut_off_stream_and_errors_store_nothing(client: Client) -> None:
    body = chat_body(unique("This stream will be cut."), temperature=0)
    before_stores = client.stores()
    httpx.post(f"{client.simulator.url}/_sim/fail", json={"count": 1, "mode": "cut"}).raise_for_status()
    with client.http.stream(
        "POST",
        "/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {TEAM_A}"},
    ) as stream:
        list(stream.iter_lines())
    # enough failures to exhaust the proxy's retries
    httpx.post(
        f"{client.simulator.url}/_sim/fail", json={"count": 20, "status": 500, "mode": "error"}
    ).raise_for_status()
    failed = client.chat(TEAM_A, body)
    httpx.post(f"{client.simulator.url}/_sim/fail", json={"count": 0}).raise_for_status()
    assert failed.status_code >= 400
    ok = client.chat(TEAM_A, body)  # a complete answer now: this one is stored
    assert ok.status_code == 200
    assert ok.headers["x-cache"] == "MISS"
    client.wait_stored(before_stores)
    assert client.stores() == before_stores + 1


def test_partial_embedding_batch_sends_only_missing_items(client: Client) -> None:
    a, b, c = unique("alpha"), unique("beta"), unique("gamma")
    before_stores = client.stores("embedding", "nomic-embed-text")
    first = client.embed(TEAM_A, [a, b])
    assert first.status_code == 200, first.text
    client.wait_stored(before_stores, "embedding", "nomic-embed-text")
    inputs_before = client.upstream_calls("embed_inputs")

    mixed = client.embed(TEAM_A, [b, c, a])
    assert mixed.status_code == 200, mixed.text
    assert mixed.headers.get("x-cache-items") == "2/3"
    assert client.upstream_calls("embed_inputs") == inputs_before + 1
    last = client.sim_stats()["last_calls"][-1]
    assert last["inputs"] == [c]

    # identical to a full miss: another tenant (no shared entries) gets every vector from upstream
    full = client.embed(TEAM_B, [b, c, a])
    got = [item["embedding"] for item in sorted(mixed.json()["data"], key=lambda d: d["index"])]
    want = [item["embedding"] for item in sorted(full.json()["data"], key=lambda d: d["index"])]
    assert [item["index"] for item in mixed.json()["data"]] == [0, 1, 2]
    assert got == want

    all_cached = client.embed(TEAM_A, [a, b])
    assert all_cached.headers["x-cache"] == "HIT"
    assert all_cached.headers["x-cache-layer"] == "embedding"


def test_delete_model_empties_its_entries_for_admin_only(client: Client) -> None:
    body = chat_body(unique("Cache me, then forget me."), temperature=0)
    before_stores = client.stores()
    client.chat(TEAM_A, body)
    client.wait_stored(before_stores)
    assert client.chat(TEAM_A, body).headers["x-cache"] == "HIT"

    refused = client.http.delete("/v1/cache/llama3.2", headers={"Authorization": f"Bearer {TEAM_A}"})
    assert refused.status_code in (401, 403)
    assert client.chat(TEAM_A, body).headers["x-cache"] == "HIT"
    bogus = client.http.delete("/v1/cache/llama3.2", headers={"Authorization": "Bearer sk-bogus"})
    assert bogus.status_code == 401
    # Without any Authorization header LiteLLM 1.106 itself answers 500 (its error handler imports
    # prisma) on every route; refused all the same.
    assert client.http.delete("/v1/cache/llama3.2").status_code >= 400
    assert client.chat(TEAM_A, body).headers["x-cache"] == "HIT"

    done = client.http.delete(
        "/v1/cache/llama3.2", headers={"Authorization": f"Bearer {client.proxy.master_key}"}
    )
    assert done.status_code == 200, done.text
    assert client.chat(TEAM_A, body).headers["x-cache"] == "MISS"


def test_stats_are_admin_only(client: Client) -> None:
    assert client.http.get("/v1/cache/stats", headers={"Authorization": f"Bearer {TEAM_A}"}).status_code in (
        401,
        403,
    )
    stats = client.http.get("/v1/cache/stats", headers={"Authorization": f"Bearer {client.proxy.master_key}"})
    assert stats.status_code == 200
    assert "exact" in stats.json()["layers"]


def test_no_cache_and_no_store_controls(client: Client) -> None:
    body = chat_body(unique("Controls test."), temperature=0)
    before_stores = client.stores()
    client.chat(TEAM_A, body)
    client.wait_stored(before_stores)
    stored = client.stores()
    assert client.chat(TEAM_A, body, headers={"Cache-Control": "no-cache"}).headers["x-cache"] == "BYPASS"
    assert client.chat(TEAM_A, {**body, "cache": {"no-cache": True}}).headers["x-cache"] == "BYPASS"
    # Both went upstream and store their fresh answer, written after their responses were sent: wait
    # for both writes, or one could land in the no-store count below.
    assert client.wait_for(lambda: client.stores() >= stored + 2), "the no-cache answers were not stored"
    assert client.chat(TEAM_A, body).headers["x-cache"] == "HIT"
    fresh = chat_body(unique("Never store me."), temperature=0)
    stores = client.stores()
    client.chat(TEAM_A, fresh, headers={"Cache-Control": "no-store"})
    assert client.chat(TEAM_A, fresh).headers["x-cache"] == "MISS"
    client.wait_stored(stores)
    assert client.stores() == stores + 1


def test_text_completions_are_cached(client: Client) -> None:
    body = {"model": "llama3.2-text", "prompt": unique("Once upon a time"), "temperature": 0}
    headers = {"Authorization": f"Bearer {TEAM_A}"}
    stores = client.stores(model="llama3.2-text")
    first = client.http.post("/v1/completions", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "MISS"
    client.wait_stored(stores, model="llama3.2-text")
    second = client.http.post("/v1/completions", json=body, headers=headers)
    assert second.headers["x-cache"] == "HIT"
    assert second.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]
