"""What a hit saved: pure functions of what was measured when the entry was made."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.savings import (
    GPU_SECONDS,
    TOKENS,
    embedding_item_facts,
    savings_of,
    upstream_facts,
)
from litellm_cache_plugin.settings import Prices

OLLAMA_RAW = orjson.dumps(
    {"done": True, "total_duration": 1_234_567_890, "prompt_eval_count": 12, "eval_count": 30}
).decode()
BODY = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}}


def test_facts_take_tokens_from_usage_and_gpu_time_from_ollamas_raw_response() -> None:
    facts = upstream_facts(BODY, OLLAMA_RAW, "ollama_chat")
    assert facts == {TOKENS: [12, 30], GPU_SECONDS: pytest.approx(1.23456789)}


@pytest.mark.parametrize(
    ("raw", "provider"),
    [
        (OLLAMA_RAW, "openai"),  # only Ollama reports its compute time
        ("first stream response received", "ollama_chat"),  # streams: LiteLLM keeps no durations
        ("{not json total_duration", "ollama"),
        (None, "ollama"),
        (orjson.dumps({"total_duration": -5}).decode(), "ollama"),
    ],
)
def test_no_gpu_time_unless_the_server_reported_it(raw: object, provider: str) -> None:
    assert GPU_SECONDS not in upstream_facts(BODY, raw, provider)


def test_unknown_usage_records_no_tokens() -> None:
    assert upstream_facts({"usage": {"prompt_tokens": "12"}}, None, None) == {}
    assert upstream_facts({}, None, None) == {}


def test_savings_subtract_the_hits_own_latency_and_never_go_negative() -> None:
    assert savings_of({}, 500.0, 20.0).latency_ms == 480.0
    assert savings_of({}, 10.0, 20.0).latency_ms == 0.0
    assert savings_of({}, None, 20.0).latency_ms is None


def test_cost_prefers_settings_prices_then_gpu_price_then_litellms_cost_map() -> None:
    extra = {TOKENS: [100, 50], GPU_SECONDS: 36.0}
    per_token = Prices(input_cost_per_token=1e-6, output_cost_per_token=3e-6, gpu_cost_per_hour=99.0)
    assert savings_of(extra, None, None, per_token).cost_usd == pytest.approx(100e-6 + 150e-6)
    gpu = Prices(gpu_cost_per_hour=2.0)
    assert savings_of(extra, None, None, gpu).cost_usd == pytest.approx(0.02)
    cost_map = {"input_cost_per_token": 2e-6, "output_cost_per_token": 4e-6}
    assert savings_of(extra, None, None, None, cost_map).cost_usd == pytest.approx(400e-6)
    # Unknown is not zero.
    assert savings_of(extra, None, None).cost_usd is None
    assert savings_of({}, None, None, gpu).cost_usd is None


def test_embedding_items_save_their_prompt_tokens() -> None:
    assert savings_of(embedding_item_facts(7), None, None).input_tokens == 7
    assert embedding_item_facts(None) == {}


@given(
    upstream=st.floats(min_value=0, max_value=1e7),
    hit=st.floats(min_value=0, max_value=1e7),
    prompt=st.integers(min_value=0, max_value=10**7),
    completion=st.integers(min_value=0, max_value=10**7),
)
def test_savings_are_never_negative(upstream: float, hit: float, prompt: int, completion: int) -> None:
    saved = savings_of(
        {TOKENS: [prompt, completion]},
        upstream,
        hit,
        Prices(input_cost_per_token=1e-6, output_cost_per_token=1e-6),
    )
    assert saved.latency_ms is not None and saved.latency_ms >= 0
    assert saved.cost_usd is not None and saved.cost_usd >= 0
    assert saved.latency_ms <= upstream
