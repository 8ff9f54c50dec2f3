"""The Ollama simulator, exercised over real HTTP (and once through LiteLLM itself)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

# LiteLLM would otherwise try to download its cost map on import; there is no network here.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import pytest

from litellm_cache_plugin.simulator import SimModel, SimulatorConfig, SimulatorThread, create_app
from litellm_cache_plugin.simulator.__main__ import parse_model
from tests.loop_stalls import LoopStalls

CHAT = "llama3.2:1b"
EMBED = "nomic-embed-text"
# Fast timings so functional tests spend almost no time sleeping.
FAST: dict[str, Any] = {"latency_ms": 1, "tokens_per_second": 20000, "prompt_tokens_per_second": 1e6}
LONG_SYSTEM = "You are a meticulous assistant for the ACME support desk. " * 30


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(**FAST)) as running:
        yield running


@pytest.fixture
def client(sim: SimulatorThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10) as http:
        yield http


def chat(client: httpx.Client, content: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": CHAT,
        "messages": [{"role": "user", "content": content}],
        "stream": False,
    }
    body.update(extra)
    response = client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def stream_lines(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]


def stats(client: httpx.Client) -> dict[str, Any]:
    return client.get("/_sim/stats").json()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- chat / generate


def test_chat_non_stream_shape(client: httpx.Client) -> None:
    reply = chat(client, "Why is the sky blue?", options={"temperature": 0})
    assert reply["model"] == CHAT
    assert reply["message"]["role"] == "assistant"
    assert reply["message"]["content"].startswith("Simulated answer ")
    assert "Why is the sky blue?" in reply["message"]["content"]
    assert reply["done"] is True
    assert reply["done_reason"] == "stop"
    assert reply["eval_count"] == 24 == len(reply["message"]["content"].split())
    assert reply["prompt_eval_count"] >= 1
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(reply[key], int) and reply[key] > 0
    assert reply["total_duration"] >= reply["prompt_eval_duration"] + reply["eval_duration"]
    assert reply["created_at"].endswith("Z")


def test_chat_streams_by_default(client: httpx.Client) -> None:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "options": {"temperature": 0}}
    lines = stream_lines(client, "/api/chat", body)
    *tokens, final = lines
    assert len(tokens) == 24
    assert all(line["done"] is False and line["message"]["role"] == "assistant" for line in tokens)
    assert tokens[1]["message"]["content"].startswith(" ")  # each token keeps its leading space
    assert final["done"] is True and final["message"]["content"] == ""
    assert final["eval_count"] == len(tokens)
    assert final["done_reason"] == "stop"
    assert {"prompt_eval_count", "prompt_eval_duration", "eval_duration", "total_duration"} <= final.keys()
    streamed = "".join(line["message"]["content"] for line in tokens)
    assert streamed == chat(client, "hello", options={"temperature": 0})["message"]["content"]


def test_deterministic_at_temperature_zero(client: httpx.Client) -> None:
    first = chat(client, "What is 2+2?", options={"temperature": 0})["message"]["content"]
    assert chat(client, "What is 2+2?", options={"temperature": 0})["message"]["content"] == first
    assert chat(client, "What is 3+3?", options={"temperature": 0})["message"]["content"] != first


def test_deterministic_with_seed(client: httpx.Client) -> None:
    options = {"temperature": 0.9, "seed": 42}
    first = chat(client, "Tell me a joke", options=options)["message"]["content"]
    assert chat(client, "Tell me a joke", options=options)["message"]["content"] == first
    other = chat(client, "Tell me a joke", options={"temperature": 0.9, "seed": 43})["message"]["content"]
    assert other != first


def test_varies_without_temperature(client: httpx.Client) -> None:
    answers = {chat(client, "Tell me a joke")["message"]["content"] for _ in range(3)}
    assert len(answers) == 3
    answers = {
        chat(client, "Tell me a joke", options={"temperature": 0.7})["message"]["content"] for _ in range(2)
    }
    assert len(answers) == 2


def test_num_predict_and_stop(client: httpx.Client) -> None:
    short = chat(client, "Explain gravity", options={"temperature": 0, "num_predict": 5})
    assert short["eval_count"] == 5 and short["done_reason"] == "length"
    long = chat(client, "Explain gravity", options={"temperature": 0, "num_predict": 40})
    assert long["eval_count"] == 40 and len(long["message"]["content"].split()) == 40
    stopped = chat(client, "Explain gravity", options={"temperature": 0, "stop": ["to:"]})
    assert stopped["message"]["content"].endswith("answer " + stopped["message"]["content"].split()[2])
    assert stopped["done_reason"] == "stop" and stopped["eval_count"] == 3


def test_generate(client: httpx.Client) -> None:
    body = {"model": CHAT, "prompt": "Why is the sky blue?", "stream": False, "options": {"seed": 7}}
    reply = client.post("/api/generate", json=body).json()
    assert reply["response"].startswith("Simulated answer ") and "Why is the sky blue?" in reply["response"]
    assert reply["done"] is True and reply["done_reason"] == "stop" and reply["eval_count"] == 24
    assert isinstance(reply["context"], list)
    lines = stream_lines(client, "/api/generate", {**body, "stream": None})  # null means default: stream
    assert "".join(line["response"] for line in lines[:-1]) == reply["response"]
    assert lines[-1]["done"] is True and lines[-1]["response"] == ""
    # The system prompt is part of the rendered prompt, so it changes the answer; raw mode skips the template.
    with_system = client.post("/api/generate", json={**body, "system": "Be brief."}).json()
    assert with_system["response"] != reply["response"]
    raw = client.post("/api/generate", json={**body, "raw": True}).json()
    assert "context" not in raw


def test_load_requests(client: httpx.Client) -> None:
    loaded = client.post("/api/chat", json={"model": CHAT, "messages": []}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"
    unloaded = client.post("/api/generate", json={"model": CHAT, "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"


def test_tool_call(client: httpx.Client) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                    },
                    "required": ["city"],
                },
            },
        }
    ]
    reply = chat(client, "Weather in Paris?", tools=tools, options={"temperature": 0})
    (call,) = reply["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"]["unit"] == "c"


def test_json_format(client: httpx.Client) -> None:
    reply = chat(client, "Give me JSON", format="json", options={"temperature": 0})
    assert "answer" in json.loads(reply["message"]["content"])
    schema = {"type": "object", "properties": {"age": {"type": "integer"}, "ok": {"type": "boolean"}}}
    value = json.loads(chat(client, "Give me JSON", format=schema)["message"]["content"])
    assert isinstance(value["age"], int) and isinstance(value["ok"], bool)


# --------------------------------------------------------------------------- embeddings


def test_embed_batch_matches_single(client: httpx.Client) -> None:
    texts = ["the cat sat on the mat", "quantum chromodynamics", "The cat sat on a mat!"]
    batch = client.post("/api/embed", json={"model": EMBED, "input": texts}).json()
    assert batch["model"] == EMBED and len(batch["embeddings"]) == 3
    assert batch["prompt_eval_count"] == sum(len(t.split()) for t in texts)
    assert {"total_duration", "load_duration"} <= batch.keys()
    for text, vector in zip(texts, batch["embeddings"], strict=True):
        assert len(vector) == 256
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
        single = client.post("/api/embed", json={"model": f"{EMBED}:latest", "input": text}).json()
        assert single["embeddings"] == [vector]
    legacy = client.post("/api/embeddings", json={"model": EMBED, "prompt": texts[0]}).json()
    assert legacy["embedding"] == batch["embeddings"][0]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    cat, physics, cat2 = batch["embeddings"]
    # Texts sharing words are close, unrelated ones are not: enough for similarity-search tests.
    assert cosine(cat, cat2) > 0.6 > 0.3 > abs(cosine(cat, physics))
    short = client.post("/api/embed", json={"model": EMBED, "input": "x", "dimensions": 64}).json()
    assert len(short["embeddings"][0]) == 64
    requests = stats(client)["requests"]
    assert requests["embed"] == 6 and requests["embed_inputs"] == 8
    assert stats(client)["last_calls"][0]["inputs"] == texts


def test_embed_truncate(client: httpx.Client) -> None:
    long_text = "word " * 3000
    assert client.post("/api/embed", json={"model": EMBED, "input": long_text}).status_code == 200
    refused = client.post("/api/embed", json={"model": EMBED, "input": long_text, "truncate": False})
    assert refused.status_code == 400 and "context length" in refused.json()["error"]


# --------------------------------------------------------------------------- model listing / digests


def test_tags_show_version_ps(client: httpx.Client) -> None:
    assert client.get("/").text == "Ollama is running"
    assert "version" in client.get("/api/version").json()
    models = {m["name"]: m for m in client.get("/api/tags").json()["models"]}
    assert set(models) == {CHAT, f"{EMBED}:latest"}
    entry = models[CHAT]
    assert entry["model"] == CHAT and len(entry["digest"]) == 64 and entry["size"] > 0
    assert {"format", "family", "parameter_size", "quantization_level"} <= entry["details"].keys()
    shown = client.post("/api/show", json={"model": EMBED}).json()
    assert {"modelfile", "parameters", "template", "details", "model_info", "modified_at"} <= shown.keys()
    assert "digest" not in shown
    assert client.post("/api/show", json={"name": CHAT}).status_code == 200  # LiteLLM sends "name"
    assert client.get("/api/ps").json() == {"models": []}
    chat(client, "hi")
    assert [m["name"] for m in client.get("/api/ps").json()["models"]] == [CHAT]
    requests = stats(client)["requests"]
    assert requests["tags"] == 1 and requests["show"] == 2


def test_digest_change(client: httpx.Client) -> None:
    question = {"options": {"temperature": 0}}
    before = chat(client, "What is the capital of France?", **question)["message"]["content"]
    tags_before = client.get("/api/tags").json()["models"][0]
    show_before = client.post("/api/show", json={"model": CHAT}).json()
    vector_before = client.post("/api/embed", json={"model": EMBED, "input": "hi"}).json()["embeddings"]

    changed = client.post("/_sim/digest", json={"model": CHAT}).json()
    assert changed["digest"] != tags_before["digest"] and len(changed["digest"]) == 64
    tags_after = client.get("/api/tags").json()["models"][0]
    assert tags_after["digest"] == changed["digest"]
    assert tags_after["modified_at"] != tags_before["modified_at"]
    show_after = client.post("/api/show", json={"model": CHAT}).json()
    assert show_after["modelfile"] != show_before["modelfile"]
    assert show_after["modified_at"] != show_before["modified_at"]
    after = chat(client, "What is the capital of France?", **question)["message"]["content"]
    assert after != before

    client.post("/_sim/digest", json={"model": EMBED, "digest": "sha256:" + "ab" * 32})
    assert client.get("/api/tags").json()["models"][1]["digest"] == "ab" * 32
    vector_after = client.post("/api/embed", json={"model": EMBED, "input": "hi"}).json()["embeddings"]
    assert vector_after != vector_before
    assert client.post("/_sim/digest", json={"model": "nope"}).status_code == 404
    assert client.post("/_sim/digest", json={"model": CHAT, "digest": "not hex"}).status_code == 400


# --------------------------------------------------------------------------- prefix cache


def test_prefix_cache_reuse(client: httpx.Client) -> None:
    def ask(question: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": question}]
        body = {"model": CHAT, "messages": messages, "stream": False, "options": {"temperature": 0}}
        return client.post("/api/chat", json=body).json()  # type: ignore[no-any-return]

    first = ask("How do I reset my password?")
    second = ask("Where is my invoice?")
    system_tokens = len(LONG_SYSTEM.split())
    assert first["prompt_eval_count"] > system_tokens
    assert second["prompt_eval_count"] < 10
    assert second["prompt_eval_duration"] < first["prompt_eval_duration"]
    # An identical prompt re-evaluates just its last token, like llama.cpp.
    assert ask("Where is my invoice?")["prompt_eval_count"] == 1
    counters = stats(client)
    assert counters["prompt_tokens"] > counters["prompt_tokens_reused"] >= 2 * system_tokens
    assert [c["prompt_eval_count"] for c in counters["last_calls"]] == [
        first["prompt_eval_count"],
        second["prompt_eval_count"],
        1,
    ]

    client.post("/_sim/reset")
    cold = ask("Where is my invoice?")
    cleared = stats(client)
    assert cold["prompt_eval_count"] == cleared["last_calls"][0]["prompt_tokens"] > system_tokens
    assert cleared["requests"]["chat"] == 1 and cleared["prompt_tokens_reused"] == 0


def test_prefix_cache_covers_previous_answer(client: httpx.Client) -> None:
    first = chat(client, "Hello there", options={"temperature": 0})
    follow_up = {
        "model": CHAT,
        "stream": False,
        "messages": [
            {"role": "user", "content": "Hello there"},
            first["message"],
            {"role": "user", "content": "And then?"},
        ],
    }
    second = client.post("/api/chat", json=follow_up).json()
    # Only the new user turn is evaluated: the earlier turn and the answer are in the KV cache.
    assert second["prompt_eval_count"] == len(["<|user|>", "And", "then?", "<|assistant|>"])


# --------------------------------------------------------------------------- errors and failures


def test_errors(client: httpx.Client) -> None:
    missing = client.post("/api/chat", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "x" not found, try pulling it first'}
    assert client.post("/api/embed", json={"model": "x", "input": "hi"}).status_code == 404
    assert client.post("/api/show", json={"model": "x"}).status_code == 404
    bad = client.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()
    assert client.post("/api/generate", json={"prompt": "hi"}).status_code == 400
    embed_chat = client.post(
        "/api/chat", json={"model": EMBED, "messages": [{"role": "user", "content": "x"}]}
    )
    assert embed_chat.status_code == 400
    assert (
        client.post("/api/chat", json={"model": CHAT, "options": {"temperature": "hot"}}).status_code == 400
    )
    assert stats(client)["requests"]["chat"] == 0


def test_fail_error_mode(client: httpx.Client) -> None:
    plan = client.post("/_sim/fail", json={"count": 2, "status": 503, "mode": "error"})
    assert plan.status_code == 200
    for _ in range(2):
        failed = client.post(
            "/api/chat", json={"model": CHAT, "messages": [{"role": "user", "content": "a"}]}
        )
        assert failed.status_code == 503 and "error" in failed.json()
    # Embeddings are not generation requests, so they are not affected by default.
    assert client.post("/api/embed", json={"model": EMBED, "input": "a"}).status_code == 200
    assert chat(client, "a")["done"] is True
    assert client.post("/_sim/fail", json={"mode": "explode"}).status_code == 400


def test_fail_cut_mode(client: httpx.Client) -> None:
    client.post("/_sim/fail", json={"count": 2, "mode": "cut"})
    body = {"model": CHAT, "messages": [{"role": "user", "content": "cut me"}], "stream": True}
    received: list[dict[str, Any]] = []
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                received.append(json.loads(line))
    assert 0 < len(received) < 24 and not any(line["done"] for line in received)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/generate", json={"model": CHAT, "prompt": "cut", "stream": False})
    assert chat(client, "fine now")["done"] is True
    assert [c.get("fail") for c in stats(client)["last_calls"]] == ["cut", "cut", None]


# --------------------------------------------------------------------------- timing


async def test_latency_and_speed_are_respected() -> None:
    config = SimulatorConfig(latency_ms=150, tokens_per_second=100, prompt_tokens_per_second=1e6, parallel=1)
    with SimulatorThread(config) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
            body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "stream": False}
            body["options"] = {"num_predict": 10}
            started = time.perf_counter()
            reply = (await http.post("/api/chat", json=body)).json()
            elapsed = time.perf_counter() - started
            # 150 ms overhead + 10 tokens at 100 tok/s = 0.25 s; only loose bounds on a noisy machine.
            assert 0.24 <= elapsed < 2.0
            assert reply["eval_duration"] == 100_000_000
            assert reply["load_duration"] >= 140_000_000

            # parallel=1: the second of two concurrent requests queues behind the first.
            started = time.perf_counter()
            replies = await asyncio.gather(*(http.post("/api/chat", json=body) for _ in range(2)))
            assert time.perf_counter() - started >= 0.48
            # The queued request's load_duration counts its wait: ~400 ms if both arrive together, less
            # by however late the second arrives (CI saw 379 ms). Unqueued it would be ~150 ms, so
            # 300 ms separates the two without depending on how the client's sends interleave.
            assert max(r.json()["load_duration"] for r in replies) >= 300_000_000

            # Live reconfiguration, and streamed tokens spread over the eval time.
            await http.post("/_sim/config", json={"latency_ms": 0, "tokens_per_second": 50})
            arrivals: list[float] = []
            first_token: float | None = None  # less the loop's stalls until then (the simulator's too)
            stalls = LoopStalls()
            await asyncio.sleep(0)
            started = time.perf_counter()
            async with http.stream("POST", "/api/chat", json={**body, "stream": True}) as response:
                async for line in response.aiter_lines():
                    if line:
                        arrivals.append(time.perf_counter() - started)
                        if first_token is None:
                            first_token = stalls.excused(arrivals[0])
            stalls.stop()
            assert len(arrivals) == 11
            # The first token comes early, not with the last (10 tokens at 50 tok/s: 0.2 s) as a
            # buffered stream's would.
            assert first_token is not None and first_token < 0.15 and arrivals[-1] >= 0.18


# --------------------------------------------------------------------------- config, CLI, thread


def test_config_models() -> None:
    model = SimModel(name="nomic-embed-text", kind="embed")
    assert model.digest == SimModel(name="nomic-embed-text:latest", kind="embed").digest
    assert len(model.digest) == 64
    with pytest.raises(ValueError):
        SimulatorConfig(models=[SimModel(name="a"), SimModel(name="a:latest")])
    assert [m.name for m in SimulatorConfig().models] == [CHAT, EMBED]
    assert (parse_model("llama3.2:1b").name, parse_model("llama3.2:1b").kind) == ("llama3.2:1b", "chat")
    assert parse_model("mxbai-embed-large").kind == "embed"
    assert (parse_model("qwen:0.5b:chat").name, parse_model("bge-m3:embed").kind) == ("qwen:0.5b", "embed")
    assert create_app() is not None


def test_thread_lifecycle() -> None:
    thread = SimulatorThread(SimulatorConfig(**FAST))
    with pytest.raises(RuntimeError):
        _ = thread.url
    thread.start()
    try:
        assert httpx.get(thread.url + "/").status_code == 200
        assert thread.port > 0
    finally:
        thread.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(thread.url + "/", timeout=2)


def test_cli_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "litellm_cache_plugin.simulator", "--port", "0", "--latency-ms", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[-1]
        assert httpx.get(url + "/").text == "Ollama is running"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)  # also closes the pipes


# --------------------------------------------------------------------------- LiteLLM against it


async def test_litellm_talks_to_simulator(sim: SimulatorThread) -> None:
    import litellm

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    model = f"ollama_chat/{CHAT}"
    reply = await litellm.acompletion(model=model, api_base=sim.url, messages=messages, temperature=0)
    content = reply.choices[0].message.content
    assert content.startswith("Simulated answer ") and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 24

    stream = await litellm.acompletion(
        model=model, api_base=sim.url, messages=messages, temperature=0, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(pieces) == content

    limited = await litellm.acompletion(
        model=f"ollama/{CHAT}", api_base=sim.url, messages=messages, temperature=0, max_tokens=6
    )
    assert len(limited.choices[0].message.content.split()) == 6

    embedded = await litellm.aembedding(model=f"ollama/{EMBED}", api_base=sim.url, input=["a", "b"])
    assert [len(item["embedding"]) for item in embedded.data] == [256, 256]

    async with httpx.AsyncClient(base_url=sim.url) as http:
        calls = (await http.get("/_sim/stats")).json()["last_calls"]
    assert [(c["endpoint"], c["stream"]) for c in calls] == [
        ("chat", False),
        ("chat", True),
        ("generate", False),
        ("embed", False),
    ]
    assert calls[0]["options"]["temperature"] == 0
