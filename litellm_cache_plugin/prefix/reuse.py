"""Measured KV-prefix reuse: how much of a prompt the model server did not have to evaluate.

Two sources, whichever the response has:

- **OpenAI-style usage** (OpenAI, vLLM with prompt-token details, Anthropic through LiteLLM...):
  ``usage.prompt_tokens`` is the whole prompt and ``usage.prompt_tokens_details.cached_tokens`` the
  part served from the server's prefix cache. Exact.
- **Ollama**: ``prompt_eval_count`` (LiteLLM's ``usage.prompt_tokens``) counts only the tokens the
  server evaluated; the reused ones are missing and Ollama reports the full prompt length nowhere.
  The full length is estimated: a tokenizer estimate of the prompt (LiteLLM's ``token_counter``),
  scaled by :class:`TokenRatio` to the server's own tokenizer, learned from the largest recent ratio
  ``prompt_eval_count / estimate`` (a prompt evaluated from scratch has the largest ratio; reused
  ones only lower it). Reused = estimated length - evaluated, never negative. An estimate, labelled as
  such: the benchmark (``benchmarks/prefix_affinity.py``) checks it against the simulator's own counts.

Time saved: reused tokens divided by the server's prompt-evaluation throughput, learned by
:class:`EvalRate` from responses that report ``prompt_eval_duration`` for a batch big enough to be
representative (a one-token evaluation is mostly fixed overhead), or a configured rate. None when
neither is known: an unknown saving is not a zero saving.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "EvalRate",
    "PrefixReuse",
    "TokenRatio",
    "cached_tokens_of",
    "ollama_reuse",
    "openai_reuse",
]

# Smallest evaluated batch whose duration is used to learn the prompt-evaluation throughput.
MIN_RATE_SAMPLE_TOKENS = 16


@dataclass(frozen=True)
class PrefixReuse:
    """Reuse measured on one response."""

    prompt_tokens: int  # the whole prompt
    reused_tokens: int  # served from the server's prefix cache (not evaluated)
    eval_seconds_saved_estimate: float | None  # prompt-evaluation time the reuse avoided
    source: Literal["cached_tokens", "ollama_estimate"]

    @property
    def hit(self) -> bool:
        return self.reused_tokens > 0

    @property
    def share(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens > 0 else 0.0


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def cached_tokens_of(usage: Any) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens`` (mapping or object), None when not reported."""
    return _count(_field(_field(usage, "prompt_tokens_details"), "cached_tokens"))


def openai_reuse(usage: Any, *, tokens_per_second: float | None = None) -> PrefixReuse | None:
    """Reuse from OpenAI-style usage; None unless both the prompt size and cached tokens are reported."""
    prompt_tokens = _count(_field(usage, "prompt_tokens"))
    cached = cached_tokens_of(usage)
    if prompt_tokens is None or cached is None or prompt_tokens <= 0:
        return None
    reused = min(cached, prompt_tokens)
    return PrefixReuse(prompt_tokens, reused, _seconds(reused, tokens_per_second), "cached_tokens")


def ollama_reuse(
    evaluated: int, prompt_tokens: int, *, tokens_per_second: float | None = None
) -> PrefixReuse | None:
    """Reuse from Ollama's ``prompt_eval_count`` and an estimate of the whole prompt's length."""
    if evaluated < 0 or prompt_tokens <= 0:
        return None
    total = max(prompt_tokens, evaluated)
    reused = total - evaluated
    return PrefixReuse(total, reused, _seconds(reused, tokens_per_second), "ollama_estimate")


def _seconds(tokens: int, tokens_per_second: float | None) -> float | None:
    if tokens_per_second is None or not tokens_per_second > 0:
        return None
    return tokens / tokens_per_second


class TokenRatio:
    """Scales a tokenizer estimate of a prompt to the server's own token count.

    The ratio is the largest observed ``evaluated / estimate``, decaying by ``decay`` per observation
    (half-life ~700 observations at 0.999) so that one odd prompt does not skew it for ever while the
    rare cold requests of a well-routed group (every prefix is evaluated in full once per server)
    still keep it up. Before any observation the estimate is taken as is.
    """

    def __init__(self, decay: float = 0.999, bounds: tuple[float, float] = (0.2, 5.0)) -> None:
        self.decay = decay
        self.bounds = bounds
        self.ratio: float | None = None

    def observe(self, estimate: int, evaluated: int) -> None:
        if estimate <= 0 or evaluated <= 0:
            return
        low, high = self.bounds
        sample = min(high, max(low, evaluated / estimate))
        self.ratio = sample if self.ratio is None else max(sample, self.ratio * self.decay)

    def prompt_tokens(self, estimate: int, evaluated: int) -> int:
        """The prompt's estimated length in server tokens (never less than what was evaluated)."""
        scaled = round(estimate * (self.ratio if self.ratio is not None else 1.0))
        return max(evaluated, scaled)


class EvalRate:
    """Prompt-evaluation throughput (tokens/s) of a model group, as an exponential moving average of
    what the server reports; starts from ``initial`` (configured) when given."""

    def __init__(self, initial: float | None = None, weight: float = 0.1) -> None:
        self.tokens_per_second = initial
        self.weight = weight

    def observe(self, evaluated: int, seconds: float) -> None:
        if evaluated < MIN_RATE_SAMPLE_TOKENS or not seconds > 0 or not math.isfinite(seconds):
            return
        sample = evaluated / seconds
        current = self.tokens_per_second
        self.tokens_per_second = sample if current is None else current + self.weight * (sample - current)
