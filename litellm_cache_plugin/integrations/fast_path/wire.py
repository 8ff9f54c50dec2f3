"""The wire: which requests this path may look at, and hits rendered as the proxy would send them.
Pure functions of the ASGI scope, the body and stored payloads (tested without LiteLLM)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from litellm_cache_plugin.integrations.asgi import Message, Receive
from litellm_cache_plugin.payloads import requested_encoding
from litellm_cache_plugin.policy.controls import (
    parse_cache_control,
    parse_litellm_cache_field,
    response_headers,
)
from litellm_cache_plugin.policy.keys import OUTPUT_PARAMS, RequestKind

ROUTES: Final[Mapping[str, RequestKind]] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "text",
    "/completions": "text",
    "/v1/embeddings": "embedding",
    "/embeddings": "embedding",
}
CALL_TYPES: Final[Mapping[RequestKind, str]] = {
    "chat": "acompletion",
    "text": "atext_completion",
    "embedding": "aembedding",
}
# Headers any of LiteLLM's auth paths reads a credential from (plus the configurable custom header).
CREDENTIAL_HEADERS: Final = (
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-litellm-api-key",
)
SSE_DONE: Final = b"data: [DONE]\n\n"
_REPLAY_SLICE = re.compile(r"\s*\S+\s*", re.UNICODE)

# --- pure parts: request pre-checks, hit rendering (tested without LiteLLM) -------------------------


def route_kind(scope: Mapping[str, Any]) -> RequestKind | None:
    """The cacheable route a request is for, or None. ``root_path`` is stripped like LiteLLM does."""
    if scope.get("type") != "http" or scope.get("method") != "POST":
        return None
    path = str(scope.get("path") or "")
    root = str(scope.get("app_root_path", scope.get("root_path")) or "").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return ROUTES.get(path)


def header_map(scope: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased request headers; the first occurrence wins, as with Starlette's ``Headers.get``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
    return headers


def declared_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def is_json_content(headers: Mapping[str, str]) -> bool:
    """JSON or unspecified: LiteLLM parses both as JSON; forms and binary bodies are not for us."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return content_type in ("", "application/json") or content_type.endswith("+json")


def credential_fingerprint(headers: Mapping[str, str], extra_header: str | None = None) -> str | None:
    """Hash of every header a credential may come from; None when there is none."""
    names = (*CREDENTIAL_HEADERS, extra_header.lower()) if extra_header else CREDENTIAL_HEADERS
    parts = [f"{name}\x00{headers[name]}" for name in names if name in headers]
    if not parts:
        return None
    return hashlib.sha256("\x01".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


# Body fields a request served here may carry besides the output parameters (which are all part of the
# key: an entry exists only if LiteLLM accepted them before). Anything else - routing, fallbacks, mock
# responses, guardrails, timeouts, tags - changes or may refuse what LiteLLM does, so it is its call.
_REQUEST_FIELDS: Final = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "input",
        "stream",
        "stream_options",
        "metadata",
        "user",
        "cache",
        "cache_key",
    }
)
# Fields outside the key that LiteLLM validates: another type gets LiteLLM's own error, not a hit.
_FIELD_TYPES: Final[Mapping[str, type | tuple[type, ...]]] = {
    "stream_options": dict,
    "metadata": dict,
    "user": str,
    "cache": dict,
    "cache_key": str,
}


def check_body(data: Any, kind: RequestKind) -> str | None:
    """Why a parsed body cannot be served here (None: it may be). Cheap, before any auth."""
    if not isinstance(data, dict):
        return "not_an_object"
    for name, value in data.items():
        if name not in _REQUEST_FIELDS and name not in OUTPUT_PARAMS:
            return "field"
        expected = _FIELD_TYPES.get(name)
        if expected is not None and value is not None and not isinstance(value, expected):
            return "field_type"
    model = data.get("model")
    if not isinstance(model, str) or not model:
        return "model"
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return "stream"
    if kind == "chat":
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return "messages"
    elif kind == "text":
        prompt = data.get("prompt")
        if not (isinstance(prompt, str) or (_non_empty_list_of(prompt, str))):
            return "prompt"
    else:
        if stream:
            return "stream"
        if embedding_inputs(data.get("input")) is None:
            return "input"
        if requested_encoding(data.get("encoding_format")) is None:
            return "encoding_format"  # neither float nor base64: LiteLLM's (or the provider's) to answer
    if parse_litellm_cache_field(data.get("cache")).no_cache:
        return "no_cache"
    return None


def _non_empty_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, kind) for item in value)


def embedding_inputs(value: Any) -> list[str] | None:
    """The items of an embeddings ``input`` we can serve: a string or a non-empty list of strings."""
    if isinstance(value, str):
        return [value]
    if _non_empty_list_of(value, str):
        return list(value)
    return None


def header_bypasses(headers: Mapping[str, str]) -> bool:
    """``Cache-Control: no-cache``/``no-store`` on the request: the cache must not answer."""
    return parse_cache_control(headers.get("cache-control")).no_cache


def include_stream_usage(data: Mapping[str, Any], always_include: object) -> bool:
    """Whether the client's stream ends with a usage chunk, decided like the proxy does
    (``stream_options.include_usage`` or ``general_settings.always_include_stream_usage``)."""
    options = data.get("stream_options")
    if always_include is True and (not isinstance(options, dict) or "include_usage" not in options):
        return True
    return isinstance(options, dict) and options.get("include_usage") is True


def client_payload(payload: Mapping[str, Any], requested_model: str | None) -> dict[str, Any]:
    """A stored response as the proxy shows it: ``model`` is the model the client asked for (unless
    the request wants the raw name: ``requested_model`` None) and unset (null) fields are left out."""
    body = {k: v for k, v in payload.items() if v is not None}
    if requested_model and "model" in body:
        body["model"] = requested_model
    choices = body.get("choices")
    if isinstance(choices, list):
        body["choices"] = [
            _clean_choice(choice) if isinstance(choice, dict) else choice for choice in choices
        ]
    usage = body.get("usage")
    if isinstance(usage, dict):
        body["usage"] = {k: v for k, v in usage.items() if v is not None}
    return body


def _clean_choice(choice: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = {k: v for k, v in choice.items() if v is not None}
    message = cleaned.get("message")
    if isinstance(message, dict):
        # ``content: null`` stays: next to tool calls it is part of the OpenAI shape.
        cleaned["message"] = {k: v for k, v in message.items() if v is not None or k == "content"}
    return cleaned


def split_for_replay(text: str | None) -> list[str]:
    """Lossless word-shaped slices, the cadence LiteLLM uses when it replays a cached answer."""
    if not text or text.isspace():
        return [text] if text else []
    return _REPLAY_SLICE.findall(text)


def sse(event: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def chat_stream_events(payload: Mapping[str, Any], *, include_usage: bool, created: int) -> list[bytes]:
    """A stored chat completion as the SSE chunks a streamed LiteLLM cache hit sends."""
    base: dict[str, Any] = {
        "id": payload.get("id") or f"chatcmpl-{uuid.uuid4()}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": payload.get("model"),
    }
    if payload.get("system_fingerprint") is not None:
        base["system_fingerprint"] = payload["system_fingerprint"]
    choices = payload.get("choices") or []
    events: list[bytes] = []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        content = message.get("content")
        # Several choices keep their text whole (LiteLLM replays n>1 answers unsplit as well).
        pieces: list[str | None] = list(split_for_replay(content) if len(choices) == 1 else [content])
        if not pieces:
            pieces = [None]
        for number, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if number == 0:
                delta = {"role": message.get("role") or "assistant", "content": piece}
                tool_calls = message.get("tool_calls")
                if isinstance(tool_calls, list) and tool_calls:
                    delta["tool_calls"] = [
                        {"index": call.get("index", i), **call} if isinstance(call, dict) else call
                        for i, call in enumerate(tool_calls)
                    ]
                if message.get("function_call") is not None:
                    delta["function_call"] = message["function_call"]
            events.append(sse({**base, "choices": [{"index": index, "delta": delta}]}))
        finish = choice.get("finish_reason") or "stop"
        events.append(sse({**base, "choices": [{"index": index, "delta": {}, "finish_reason": finish}]}))
    usage = payload.get("usage")
    if include_usage and isinstance(usage, dict):
        events.append(sse({**base, "choices": [{"index": 0, "delta": {}}], "usage": usage}))
    events.append(SSE_DONE)
    return events


def text_stream_events(payload: Mapping[str, Any], *, include_usage: bool, created: int) -> list[bytes]:
    """A stored text completion as the SSE chunks a streamed ``/v1/completions`` call sends."""
    base: dict[str, Any] = {
        "id": payload.get("id") or f"cmpl-{uuid.uuid4()}",
        "object": "text_completion",
        "created": created,
        "model": payload.get("model"),
    }
    choices = payload.get("choices") or []
    events: list[bytes] = []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        text = choice.get("text")
        pieces = split_for_replay(text) if len(choices) == 1 else ([text] if text else [])
        for piece in pieces:
            events.append(sse({**base, "choices": [{"index": index, "text": piece}]}))
        finish = choice.get("finish_reason") or "stop"
        events.append(sse({**base, "choices": [{"finish_reason": finish, "index": index}]}))
    usage = payload.get("usage")
    if include_usage and isinstance(usage, dict):
        events.append(sse({**base, "choices": [{"index": 0}], "usage": usage}))
    events.append(SSE_DONE)
    return events


def embedding_body(
    items: Sequence[Mapping[str, Any]],
    inputs: Sequence[str],
    fallback_model: str,
    count_tokens: Callable[[str], int],
) -> dict[str, Any] | None:
    """The response LiteLLM builds when every item of an embeddings request is cached (None: an item
    lacks its vector)."""
    data: list[dict[str, Any]] = []
    prompt_tokens = 0
    for index, item in enumerate(items):
        vector = item.get("embedding")
        if vector is None:
            return None
        data.append({"embedding": vector, "index": index, "object": "embedding"})
        tokens = item.get("prompt_tokens")
        prompt_tokens += int(tokens) if isinstance(tokens, int) else count_tokens(inputs[index])
    model = next((item.get("model") for item in items if item.get("model")), None) or fallback_model
    return {
        "model": model,
        "data": data,
        "object": "list",
        "usage": {
            "completion_tokens": 0,
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "completion_tokens_details": None,
            "prompt_tokens_details": None,
        },
    }


def hit_headers(
    *,
    layer: str,
    age: int | None,
    stream: bool,
    call_id: str,
    model_group: str,
    content_length: int | None = None,
    items: tuple[int, int] | None = None,
    cache_key: str | None = None,
    edge: Mapping[str, str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """Raw ASGI headers of a hit: the hook path's cache headers (``edge``: the edge layer's), plus what
    a client needs to correlate."""
    headers = {name.lower(): value for name, value in response_headers("HIT", layer, age).items()}
    headers.update((name.lower(), value) for name, value in (edge or {}).items())
    if items is not None:
        headers["x-cache-items"] = f"{items[0]}/{items[1]}"
    if cache_key is not None:
        # LiteLLM reports the (tenant-scoped, so harmless) key of a hit; the hook path does the same.
        headers["x-litellm-cache-key"] = cache_key
    headers["x-litellm-call-id"] = call_id
    headers["x-litellm-model-group"] = model_group
    if stream:
        headers["content-type"] = "text/event-stream; charset=utf-8"
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
    else:
        headers["content-type"] = "application/json"
    if content_length is not None:
        headers["content-length"] = str(content_length)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def prefixed_receive(messages: Sequence[Message], receive: Receive) -> Receive:
    """A ``receive`` that first replays what was already consumed, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """Read the whole body (None when it is over ``limit`` or the client left) and every message
    consumed, so the request can be replayed unchanged."""
    consumed: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        consumed.append(message)
        if message.get("type") != "http.request":
            return None, consumed
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, consumed
        chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(chunks)
            # One message holding everything replays cheaper than many small ones.
            return body, [{"type": "http.request", "body": body, "more_body": False}]
