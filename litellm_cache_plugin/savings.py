"""What a served cache entry saved: pure functions of what was measured when the entry was made.

Nothing here is estimated from the hit itself. When the entry is written the plugin records, next to
the answer, what producing it cost (:func:`upstream_facts`): the upstream latency LiteLLM measured,
the token counts the provider reported, and for Ollama the compute time the server reported
(``total_duration``, nanoseconds, from its raw response). A hit then saves exactly that
(:func:`savings_of`), minus its own latency. A figure that was not measured stays ``None`` and is
not counted: an unknown saving is not a zero saving, and never a guess.

Known gaps (documented in the README): LiteLLM drops Ollama's durations from streamed chunks, so an
entry made by a streamed miss has no GPU time; embedding batches report one duration for the whole
batch, which is not split per item.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from litellm_cache_plugin.settings import Prices

# Keys inside an entry's ``extra`` (short: they are stored with every entry).
TOKENS = "tok"  # [prompt tokens, completion tokens] of the upstream call
GPU_SECONDS = "gpu"  # model-server compute seconds of the upstream call (Ollama total_duration)

OLLAMA_PROVIDERS = frozenset({"ollama", "ollama_chat"})


@dataclass(frozen=True)
class Savings:
    """What one served entry saved; ``None`` where it was not measured."""

    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    gpu_seconds: float | None = None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


# -- measured figures (pure; telemetry re-exports them) ------------------------------------------


def _nanoseconds(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _ollama_fields(data: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    # Ollama reports durations at the top of its native response; LiteLLM may move them into usage.
    yield data
    for nested in ("usage", "_hidden_params"):
        inner = data.get(nested)
        if isinstance(inner, Mapping):
            yield inner


def _sum_durations(
    data: Mapping[str, Any] | Iterable[Mapping[str, Any]], fields: tuple[str, ...]
) -> float | None:
    items: Iterable[Mapping[str, Any]] = [data] if isinstance(data, Mapping) else data
    total, found = 0, False
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for source in _ollama_fields(item):
            values = [_nanoseconds(source.get(name)) for name in fields]
            if all(v is not None for v in values):
                total += sum(v for v in values if v is not None)
                found = True
                break
    return total / 1e9 if found else None


def gpu_seconds_from_ollama(data: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> float | None:
    """Seconds of Ollama's ``total_duration`` (ns) in one response dict or summed over several (e.g.
    embedding batches); None when none reports it. Includes model load and queueing time."""
    return _sum_durations(data, ("total_duration",))


def gpu_seconds_from_ollama_evals(data: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> float | None:
    """Seconds of ``prompt_eval_duration + eval_duration``: compute only, without load time."""
    return _sum_durations(data, ("prompt_eval_duration", "eval_duration"))


def latency_saved(upstream_ms: float | None, hit_ms: float) -> float | None:
    """Upstream latency minus the time the hit took, never negative; None without an upstream figure."""
    if upstream_ms is None or not math.isfinite(upstream_ms) or not math.isfinite(hit_ms):
        return None
    return max(0.0, upstream_ms - max(0.0, hit_ms))


def cost_saved(
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    prices: Mapping[str, Mapping[str, Any]] | None,
) -> float | None:
    """USD an upstream call would have cost. ``prices`` maps a model to ``input_cost_per_token`` and
    ``output_cost_per_token`` (LiteLLM's ``model_cost`` shape, so it can be passed straight through).
    None when the model, a price or a token count is unknown: an unknown cost is not a zero cost."""
    if not prices or prompt_tokens is None or completion_tokens is None:
        return None
    if prompt_tokens < 0 or completion_tokens < 0:
        return None
    price = prices.get(model)
    if price is None:
        return None
    per_in, per_out = _price(price.get("input_cost_per_token")), _price(price.get("output_cost_per_token"))
    if per_in is None or per_out is None:
        return None
    return prompt_tokens * per_in + completion_tokens * per_out


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:  # also rejects NaN
        return None
    return float(value)


# -- entries -----------------------------------------------------------------------------------------


def upstream_facts(body: Mapping[str, Any], original_response: Any, provider: str | None) -> dict[str, Any]:
    """The cost of producing ``body`` (an OpenAI-shaped response), to store in the entry's ``extra``.

    ``original_response`` is the provider's raw response text as LiteLLM logged it; only Ollama's is
    read, and only when it is a complete JSON document carrying ``total_duration``."""
    facts: dict[str, Any] = {}
    usage = body.get("usage")
    if isinstance(usage, Mapping):
        prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        if prompt is not None:
            facts[TOKENS] = [prompt, completion or 0]
    if provider in OLLAMA_PROVIDERS and isinstance(original_response, (str, bytes)):
        raw = original_response.encode() if isinstance(original_response, str) else original_response
        if b"total_duration" in raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, Mapping):
                seconds = gpu_seconds_from_ollama(parsed)
                if seconds is not None:
                    facts[GPU_SECONDS] = round(seconds, 9)
    return facts


def embedding_item_facts(prompt_tokens: Any) -> dict[str, Any]:
    """Facts of one cached embedding item: its own prompt tokens (no output tokens)."""
    count = _count(prompt_tokens)
    return {TOKENS: [count, 0]} if count is not None else {}


def savings_of(
    extra: Mapping[str, Any],
    upstream_ms: float | None,
    hit_ms: float | None,
    prices: Prices | None = None,
    model_cost: Mapping[str, Any] | None = None,
) -> Savings:
    """What serving an entry saved. ``hit_ms``: how long the hit took (subtracted from the recorded
    upstream latency). Cost: per-token prices from settings, else ``gpu_cost_per_hour`` times the
    recorded GPU time, else LiteLLM's cost-map entry for the deployment (``model_cost``)."""
    tokens = extra.get(TOKENS)
    prompt = completion = None
    if isinstance(tokens, (list, tuple)) and len(tokens) == 2:
        prompt, completion = _count(tokens[0]), _count(tokens[1])
    gpu = extra.get(GPU_SECONDS)
    gpu_seconds = float(gpu) if isinstance(gpu, (int, float)) and math.isfinite(gpu) and gpu >= 0 else None
    latency = None
    if upstream_ms is not None and math.isfinite(upstream_ms):
        latency = max(0.0, upstream_ms - max(0.0, hit_ms or 0.0))
    return Savings(
        latency_ms=latency,
        input_tokens=prompt,
        output_tokens=completion,
        cost_usd=_cost(prompt, completion, gpu_seconds, prices, model_cost),
        gpu_seconds=gpu_seconds,
    )


def _cost(
    prompt: int | None,
    completion: int | None,
    gpu_seconds: float | None,
    prices: Prices | None,
    model_cost: Mapping[str, Any] | None,
) -> float | None:
    if prices is not None:
        if prices.input_cost_per_token is not None and prices.output_cost_per_token is not None:
            sheet = {
                "input_cost_per_token": prices.input_cost_per_token,
                "output_cost_per_token": prices.output_cost_per_token,
            }
            return cost_saved("m", prompt, completion, {"m": sheet})
        if prices.gpu_cost_per_hour is not None:
            return gpu_seconds * prices.gpu_cost_per_hour / 3600.0 if gpu_seconds is not None else None
    if model_cost is not None:
        return cost_saved("m", prompt, completion, {"m": model_cost})
    return None
