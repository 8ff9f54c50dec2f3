"""Stored answers in one canonical shape per request kind, converted for each reader. Pure, no I/O.

Why: one entry serves streamed and non-streamed requests, through LiteLLM's own replay (hook path)
and through our renderer (fast path). LiteLLM hands a streamed text completion to the cache in the
*chat* shape (``choices[].message``) once its chunks are assembled, a non-streamed one in the
``text_completion`` shape (``choices[].text``); and LiteLLM's stream replay reads only the chat shape.
So a text completion is stored as ``text_completion`` whatever produced it, and handed to LiteLLM's
stream replay as chat; the fast path renders from the canonical shape.

Embedding vectors are stored once, as floats, whatever ``encoding_format`` the request that produced
them used (base64 is decoded: little-endian float32, as the OpenAI API defines it), and encoded per
request when served.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any, Literal

EmbeddingEncoding = Literal["float", "base64"]

# Providers that ignore ``encoding_format`` (LiteLLM drops it for them with ``drop_params``): a miss
# answers floats to a base64 request, so a hit does the same.
FLOAT_ONLY_PROVIDERS = frozenset({"ollama", "ollama_chat"})


def canonical_response(kind: str, body: Any) -> Any:
    """The shape an answer of ``kind`` is stored (and read) in."""
    if kind == "text" and isinstance(body, dict):
        return canonical_text_completion(body)
    return body


def canonical_text_completion(body: Mapping[str, Any]) -> dict[str, Any]:
    """A text completion in the ``text_completion`` shape, from either shape LiteLLM produces."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return dict(body)
    converted: list[Any] = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            converted.append(choice)
            continue
        text = choice.get("text")
        if not isinstance(text, str):
            message = choice.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            text = content if isinstance(content, str) else ""
        converted.append(
            {
                "index": choice.get("index", position),
                "text": text,
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return {**body, "object": "text_completion", "choices": converted}


def text_completion_as_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical text completion in the chat shape LiteLLM's stream replay reads
    (``convert_to_streaming_response_async`` takes ``choices[].message``); LiteLLM's text-completion
    stream wrapper turns the replayed deltas back into ``text`` chunks."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return dict(body)
    converted = [
        {
            "index": choice.get("index", position),
            "message": {"role": "assistant", "content": choice.get("text") or ""},
            "finish_reason": choice.get("finish_reason"),
        }
        if isinstance(choice, dict)
        else choice
        for position, choice in enumerate(choices)
    ]
    return {**body, "object": "chat.completion", "choices": converted}


def response_for_reader(kind: str, body: Any, *, stream: bool) -> Any:
    """A stored answer as LiteLLM's cache-hit handling expects it for this request."""
    body = canonical_response(kind, body)
    if kind == "text" and stream and isinstance(body, dict):
        return text_completion_as_chat(body)
    return body


# -- embeddings ------------------------------------------------------------------------------------


def stored_vector(value: Any) -> list[float] | None:
    """A vector as stored (floats), from what an upstream answered (floats or base64 float32)."""
    if isinstance(value, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
    ):
        return [float(x) for x in value]
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return None
        if len(raw) % 4:
            return None
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return None


def requested_encoding(value: Any) -> EmbeddingEncoding | None:
    """``encoding_format`` of a request: None when it is neither unset, ``float`` nor ``base64``."""
    if value is None or value == "float":
        return "float"
    if value == "base64":
        return "base64"
    return None


def answer_encoding(requested: EmbeddingEncoding, provider: str | None) -> EmbeddingEncoding:
    """The encoding a miss would have answered in: float-only providers always answer floats."""
    if requested == "base64" and (provider or "") not in FLOAT_ONLY_PROVIDERS:
        return "base64"
    return "float"


def encode_vector(vector: Any, encoding: EmbeddingEncoding) -> Any:
    """A stored vector in the encoding a request is answered in (anything else is left as it is)."""
    if encoding == "float" and isinstance(vector, list):
        return vector  # stored as floats already (the common case: no per-element work)
    floats = stored_vector(vector)
    if floats is None:
        return vector
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode("ascii")
    return floats
