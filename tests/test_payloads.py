"""Stored answer shapes and embedding encodings (pure)."""

from __future__ import annotations

import base64
import struct

from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.payloads import (
    answer_encoding,
    canonical_response,
    encode_vector,
    requested_encoding,
    response_for_reader,
    stored_vector,
)

TEXT = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "llama3.2:1b",
    "choices": [{"index": 0, "text": "Hello there", "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
}
# What LiteLLM hands the cache once a streamed text completion's chunks are assembled.
ASSEMBLED = {
    **TEXT,
    "object": "chat.completion",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}
    ],
}
CHAT = {**ASSEMBLED, "id": "chatcmpl-1"}


def test_text_completions_are_stored_in_the_text_shape_whatever_produced_them() -> None:
    assert canonical_response("text", TEXT) == TEXT
    assert canonical_response("text", ASSEMBLED) == TEXT


def test_chat_answers_are_stored_as_they_are() -> None:
    assert canonical_response("chat", CHAT) is CHAT


def test_a_streamed_text_hit_is_handed_to_litellms_replay_in_the_chat_shape() -> None:
    for stored in (TEXT, ASSEMBLED):
        replay = response_for_reader("text", stored, stream=True)
        assert replay["choices"][0]["message"] == {"role": "assistant", "content": "Hello there"}
        assert replay["choices"][0]["finish_reason"] == "stop"
        assert response_for_reader("text", stored, stream=False) == TEXT
    assert response_for_reader("chat", CHAT, stream=True) is CHAT


def test_a_choice_without_text_becomes_empty_text_not_none() -> None:
    odd = {**TEXT, "choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}
    assert canonical_response("text", odd)["choices"][0]["text"] == ""


def test_requested_and_answered_encodings() -> None:
    assert requested_encoding(None) == "float"
    assert requested_encoding("float") == "float"
    assert requested_encoding("base64") == "base64"
    assert requested_encoding("int8") is None
    # Ollama ignores encoding_format (LiteLLM drops it): a miss answers floats, so a hit does too.
    assert answer_encoding("base64", "ollama") == "float"
    assert answer_encoding("base64", "ollama_chat") == "float"
    assert answer_encoding("base64", "openai") == "base64"
    assert answer_encoding("float", "openai") == "float"


def test_float_vectors_are_served_unchanged() -> None:
    vector = [0.1, -0.25, 3.0]
    assert encode_vector(vector, "float") is vector
    assert stored_vector(vector) == vector


def test_invalid_vectors_are_refused() -> None:
    assert stored_vector("not base64!") is None
    assert stored_vector(base64.b64encode(b"abc").decode()) is None  # not a whole float32
    assert stored_vector([1.0, "x"]) is None
    assert stored_vector([True]) is None
    assert stored_vector(None) is None


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=64))
def test_base64_round_trips_exactly(values: list[float]) -> None:
    """A base64 answer (little-endian float32, as OpenAI defines it) is stored as floats and
    re-encoded byte for byte."""
    encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    stored = stored_vector(encoded)
    assert stored == values
    assert encode_vector(stored, "base64") == encoded
    assert encode_vector(encoded, "float") == values
