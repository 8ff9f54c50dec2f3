"""Pure parts of the fast hit path: request pre-checks, SSE rendering, body replay, fall-through."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from litellm_cache_plugin.integrations import fast_path as fp
from litellm_cache_plugin.settings import PluginSettings

# --- routes and headers ------------------------------------------------------------------------------


def _scope(path: str = "/v1/chat/completions", method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "headers": [], **extra}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/chat/completions", "chat"),
        ("/chat/completions", "chat"),
        ("/v1/completions", "text"),
        ("/completions", "text"),
        ("/v1/embeddings", "embedding"),
        ("/embeddings", "embedding"),
        ("/v1/chat/completions/", None),
        ("/v1/responses", None),
        ("/openai/deployments/x/chat/completions", None),
    ],
)
def test_route_kind(path: str, kind: str | None) -> None:
    assert fp.route_kind(_scope(path)) == kind


def test_route_kind_needs_post_http_and_strips_the_root_path() -> None:
    assert fp.route_kind(_scope(method="GET")) is None
    assert fp.route_kind({**_scope(), "type": "websocket"}) is None
    assert fp.route_kind(_scope("/genai/v1/embeddings", root_path="/genai")) == "embedding"
    assert fp.route_kind(_scope("/genai/v1/embeddings", root_path="/genai/")) == "embedding"
    assert fp.route_kind(_scope("/genaix/v1/embeddings", root_path="/genai")) is None


def test_header_map_lowercases_and_keeps_the_first_value() -> None:
    scope = {"headers": [(b"Authorization", b"Bearer a"), (b"authorization", b"Bearer b"), (b"X-Y", b"1")]}
    assert fp.header_map(scope) == {"authorization": "Bearer a", "x-y": "1"}


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [("", True), ("application/json", True), ("application/json; charset=utf-8", True),
     ("application/vnd.api+json", True), ("multipart/form-data; boundary=x", False), ("text/plain", False)],
)  # fmt: skip
def test_is_json_content(content_type: str, ok: bool) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert fp.is_json_content(headers) is ok


def test_declared_length() -> None:
    assert fp.declared_length({"content-length": "12"}) == 12
    assert fp.declared_length({"content-length": "x"}) is None
    assert fp.declared_length({}) is None


def test_credential_fingerprint_covers_every_credential_header() -> None:
    assert fp.credential_fingerprint({"content-type": "application/json"}) is None
    bearer = fp.credential_fingerprint({"authorization": "Bearer a"})
    assert bearer is not None and len(bearer) == 64
    assert bearer != fp.credential_fingerprint({"authorization": "Bearer b"})
    assert bearer != fp.credential_fingerprint({"authorization": "Bearer a", "x-litellm-api-key": "k"})
    assert fp.credential_fingerprint({"x-custom": "k"}) is None
    assert fp.credential_fingerprint({"x-custom": "k"}, "X-Custom") is not None


def test_header_bypasses() -> None:
    assert fp.header_bypasses({"cache-control": "no-cache"})
    assert fp.header_bypasses({"cache-control": "max-age=0, no-cache"})
    assert not fp.header_bypasses({"cache-control": "no-store"})  # no-store may be served, stores nothing
    assert not fp.header_bypasses({"cache-control": "max-age=60"})
    assert not fp.header_bypasses({})


# --- body pre-checks ----------------------------------------------------------------------------------

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


@pytest.mark.parametrize(
    ("body", "kind", "problem"),
    [
        (CHAT, "chat", None),
        ({**CHAT, "stream": True}, "chat", None),
        ([], "chat", "not_an_object"),
        ({**CHAT, "model": 3}, "chat", "model"),
        ({**CHAT, "model": ""}, "chat", "model"),
        ({**CHAT, "stream": "yes"}, "chat", "stream"),
        ({**CHAT, "messages": []}, "chat", "messages"),
        ({**CHAT, "messages": "hi"}, "chat", "messages"),
        ({**CHAT, "cache": {"no-cache": True}}, "chat", "no_cache"),
        ({**CHAT, "cache": {"no-store": True}}, "chat", None),
        ({**CHAT, "cache": {"no-store": True, "no-cache": True}}, "chat", "no_cache"),
        ({"model": "m", "prompt": "hi"}, "text", None),
        ({"model": "m", "prompt": ["a", "b"]}, "text", None),
        ({"model": "m", "prompt": [1, 2]}, "text", "prompt"),
        ({"model": "m", "input": "a"}, "embedding", None),
        ({"model": "m", "input": ["a", "b"], "encoding_format": "float"}, "embedding", None),
        ({"model": "m", "input": ["a"], "encoding_format": "base64"}, "embedding", None),
        ({"model": "m", "input": ["a"], "encoding_format": "int8"}, "embedding", "encoding_format"),
        ({"model": "m", "input": [[1, 2]]}, "embedding", "input"),
        ({"model": "m", "input": []}, "embedding", "input"),
        ({"model": "m", "input": "a", "stream": True}, "embedding", "stream"),
        ({**CHAT, "user": "u", "metadata": {}, "cache": {"ttl": 5}, "stream_options": {}}, "chat", None),
        ({**CHAT, "top_k": 1, "seed": 3, "tools": [], "cache_key": "x"}, "chat", None),
        ({**CHAT, "mock_response": "hi"}, "chat", "field"),
        ({**CHAT, "fallbacks": ["other"]}, "chat", "field"),
        ({**CHAT, "timeout": "x"}, "chat", "field"),
        ({**CHAT, "cache": "no-cache please"}, "chat", "field_type"),
        ({**CHAT, "metadata": "x"}, "chat", "field_type"),
        ({**CHAT, "user": 5}, "chat", "field_type"),
        ({**CHAT, "stream_options": "x"}, "chat", "field_type"),
    ],
)
def test_check_body(body: Any, kind: fp.RequestKind, problem: str | None) -> None:
    assert fp.check_body(body, kind) == problem


def test_embedding_inputs() -> None:
    assert fp.embedding_inputs("a") == ["a"]
    assert fp.embedding_inputs(["a", "b"]) == ["a", "b"]
    assert fp.embedding_inputs([]) is None
    assert fp.embedding_inputs([1]) is None
    assert fp.embedding_inputs(None) is None


def test_include_stream_usage_follows_the_proxy() -> None:
    assert fp.include_stream_usage({"stream_options": {"include_usage": True}}, None)
    assert not fp.include_stream_usage({}, None)
    assert not fp.include_stream_usage({"stream_options": {"include_usage": False}}, None)
    assert fp.include_stream_usage({}, True)
    assert fp.include_stream_usage({"stream_options": {}}, True)
    assert not fp.include_stream_usage({"stream_options": {"include_usage": False}}, True)


# --- rendering -----------------------------------------------------------------------------------------

STORED = {
    "id": "chatcmpl-1",
    "created": 100,
    "model": "ollama_chat/llama3.2:1b",
    "object": "chat.completion",
    "system_fingerprint": None,
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"content": "Hello  there,\nworld ", "role": "assistant", "tool_calls": None},
        }
    ],
    "usage": {"completion_tokens": 3, "prompt_tokens": 2, "total_tokens": 5, "prompt_tokens_details": None},
}


@pytest.mark.parametrize("text", ["Hello  there,\nworld ", "one", "  lead", "a b c", "", "   "])
def test_split_for_replay_is_lossless(text: str) -> None:
    assert "".join(fp.split_for_replay(text)) == text


def test_split_for_replay_cuts_words() -> None:
    assert fp.split_for_replay("Hello  there, world") == ["Hello  ", "there, ", "world"]
    assert fp.split_for_replay(None) == []


def _events(raw: list[bytes]) -> list[Any]:
    assert raw[-1] == b"data: [DONE]\n\n"
    out = []
    for event in raw[:-1]:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        out.append(json.loads(event[6:]))
    return out


def test_chat_stream_events_replay_content_finish_and_usage() -> None:
    events = _events(
        fp.chat_stream_events(fp.client_payload(STORED, "llama3.2"), include_usage=True, created=7)
    )
    assert all(e["id"] == "chatcmpl-1" and e["object"] == "chat.completion.chunk" for e in events)
    assert all(e["model"] == "llama3.2" and e["created"] == 7 for e in events)
    deltas = [e["choices"][0]["delta"] for e in events if e.get("choices") and not e.get("usage")]
    assert deltas[0]["role"] == "assistant"
    assert all("role" not in d for d in deltas[1:])
    assert "".join(d.get("content") or "" for d in deltas) == "Hello  there,\nworld "
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"] == {"completion_tokens": 3, "prompt_tokens": 2, "total_tokens": 5}
    assert "system_fingerprint" not in events[0]


def test_chat_stream_events_without_usage_and_with_tool_calls() -> None:
    stored = {
        "id": "c",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            }
        ],
        "usage": {"total_tokens": 1},
    }
    events = _events(fp.chat_stream_events(stored, include_usage=False, created=1))
    assert not any(e.get("usage") for e in events)
    first = events[0]["choices"][0]["delta"]
    assert first["tool_calls"][0]["index"] == 0 and first["tool_calls"][0]["function"]["name"] == "f"
    assert first["content"] is None
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_stream_events_keep_several_choices_whole() -> None:
    stored = {
        "id": "c",
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a b"}},
            {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "c d"}},
        ],
    }
    events = _events(fp.chat_stream_events(stored, include_usage=True, created=1))
    contents = [(e["choices"][0]["index"], e["choices"][0]["delta"].get("content")) for e in events]
    assert (0, "a b") in contents and (1, "c d") in contents
    assert len(events) == 4  # a content and a finish chunk per choice; no usage stored


def test_text_stream_events() -> None:
    stored = {
        "id": "cmpl-1",
        "model": "m",
        "object": "text_completion",
        "choices": [{"index": 0, "text": "one two", "finish_reason": "stop"}],
        "usage": {"total_tokens": 2},
    }
    events = _events(fp.text_stream_events(stored, include_usage=True, created=3))
    assert all(e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0].get("text", "") for e in events if e.get("choices")) == "one two"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"] == {"total_tokens": 2}


def test_client_payload_shows_the_requested_model_and_leaves_out_nulls() -> None:
    body = fp.client_payload(STORED, "llama3.2")
    assert body["model"] == "llama3.2"
    assert "system_fingerprint" not in body
    assert body["choices"][0]["message"] == {"content": "Hello  there,\nworld ", "role": "assistant"}
    assert "prompt_tokens_details" not in body["usage"]
    assert fp.client_payload(STORED, None)["model"] == "ollama_chat/llama3.2:1b"
    null_content = {"choices": [{"message": {"content": None, "tool_calls": [1]}}]}
    assert fp.client_payload(null_content, None)["choices"][0]["message"] == {
        "content": None,
        "tool_calls": [1],
    }


def test_embedding_body() -> None:
    items = [
        {"embedding": [0.1], "index": 0, "model": "nomic", "prompt_tokens": 2},
        {"embedding": [0.2], "index": 0, "model": "nomic", "prompt_tokens": None},
    ]
    body = fp.embedding_body(items, ["a b", "c"], "group", lambda text: 10)
    assert body is not None
    assert body["object"] == "list" and body["model"] == "nomic"
    assert body["data"] == [
        {"embedding": [0.1], "index": 0, "object": "embedding"},
        {"embedding": [0.2], "index": 1, "object": "embedding"},
    ]
    assert body["usage"]["prompt_tokens"] == 12 and body["usage"]["total_tokens"] == 12
    assert fp.embedding_body([{"index": 0}], ["a"], "group", len) is None
    assert fp.embedding_body([{"embedding": [1.0]}], ["a"], "group", len)["model"] == "group"  # type: ignore[index]


def test_hit_headers() -> None:
    headers = dict(
        fp.hit_headers(layer="exact", age=3, stream=False, call_id="c", model_group="g", content_length=9)
    )
    assert headers[b"x-cache"] == b"HIT" and headers[b"x-cache-layer"] == b"exact" and headers[b"age"] == b"3"
    assert headers[b"content-type"] == b"application/json" and headers[b"content-length"] == b"9"
    assert headers[b"x-litellm-call-id"] == b"c" and headers[b"x-litellm-model-group"] == b"g"
    streamed = dict(
        fp.hit_headers(layer="embedding", age=0, stream=True, call_id="c", model_group="g", items=(2, 2))
    )
    assert streamed[b"content-type"].startswith(b"text/event-stream")
    assert streamed[b"cache-control"] == b"no-cache" and streamed[b"x-cache-items"] == b"2/2"
    assert all(name == name.lower() for name in streamed)


# --- deployments ---------------------------------------------------------------------------------------


def _deployment(model: str = "ollama_chat/llama3.2:1b", **extra: Any) -> dict[str, Any]:
    info = extra.pop("model_info", {"id": "1"})
    return {
        "model_name": "g",
        "litellm_params": {"model": model, "api_base": "http://a", **extra},
        "model_info": info,
    }


def test_group_info_of_agreeing_deployments() -> None:
    info = fp.group_info([_deployment(temperature=0), _deployment(api_base="http://b", temperature=0)])
    assert info is not None
    assert info.provider == "ollama_chat"
    assert info.params == {"temperature": 0}
    assert [d.api_base for d in info.deployments] == ["http://a", "http://b"]
    kwargs = fp.sdk_kwargs({"model": "g", "messages": [], "metadata": {"x": 1}}, info, "g")
    assert kwargs["model"] == "ollama_chat/llama3.2:1b" and kwargs["custom_llm_provider"] == "ollama_chat"
    assert kwargs["metadata"] == {"x": 1, "model_group": "g", "model_info": {"id": "1"}}
    assert kwargs["temperature"] == 0 and kwargs["api_base"] == "http://a"


@pytest.mark.parametrize(
    "deployments",
    [
        [_deployment(), _deployment("ollama/llama3.2:1b")],  # providers differ
        [_deployment(), _deployment(model_info={"version": "2"})],  # configured versions differ
        [_deployment(), _deployment(temperature=0.5)],  # output parameters differ
        [_deployment(model_info={"team_id": "t"})],  # team-routed
        [_deployment("llama3.2")],  # no provider
        [],
    ],
)
def test_group_info_refuses_disagreeing_groups(deployments: list[dict[str, Any]]) -> None:
    assert fp.group_info(deployments) is None


# --- ASGI plumbing: body replay and fall-through -------------------------------------------------------


async def test_read_body_and_replay() -> None:
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    body, consumed = await fp.read_body(receive, 10)
    assert body == b"abcd"
    replay = fp.prefixed_receive(consumed, receive)
    assert await replay() == {"type": "http.request", "body": b"abcd", "more_body": False}
    assert (await replay())["type"] == "http.disconnect"


async def test_read_body_over_the_limit_replays_what_it_read() -> None:
    messages = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": True},
        {"type": "http.request", "body": b"g", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    body, consumed = await fp.read_body(receive, 4)
    assert body is None
    replay = fp.prefixed_receive(consumed, receive)
    got = b""
    while True:
        message = await replay()
        got += message["body"]
        if not message["more_body"]:
            break
    assert got == b"abcdefg"


class _Downstream:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"downstream"})


def _app(downstream: _Downstream, **fast_path: Any) -> fp.FastPathApp:
    settings = PluginSettings.model_validate({"fast_path": fast_path} if fast_path else {})
    stats = SimpleNamespace(bump=lambda *args: None)
    plugin = SimpleNamespace(settings=settings, engine=SimpleNamespace(stats=stats))
    return fp.FastPathApp(downstream, plugin, renders_refusals=True)  # type: ignore[arg-type]


async def _call(app: fp.FastPathApp, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("scope", "body"),
    [
        (_scope("/health"), b"{}"),  # not a cacheable route
        (_scope(method="GET"), b""),
        (_scope(), b'{"model": "m", "messages": '),  # malformed JSON
        (_scope(), b'["not", "an", "object"]'),
        (_scope(), json.dumps({**CHAT, "messages": []}).encode()),
        (_scope(headers=[(b"content-type", b"text/plain")]), json.dumps(CHAT).encode()),
        (_scope(headers=[(b"cache-control", b"no-cache")]), json.dumps(CHAT).encode()),
        (_scope(headers=[(b"content-length", b"999999999")]), json.dumps(CHAT).encode()),
    ],
)
async def test_requests_it_cannot_serve_reach_the_app_unchanged(scope: dict[str, Any], body: bytes) -> None:
    downstream = _Downstream()
    sent = await _call(_app(downstream), scope, body)
    assert downstream.bodies == [body]
    assert sent[-1]["body"] == b"downstream"


async def test_a_body_over_the_limit_is_replayed() -> None:
    downstream = _Downstream()
    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
    await _call(_app(downstream, max_body_bytes=100), _scope(), body)
    assert downstream.bodies == [body]
